// What a model needs of an isolate's wasm heap, measured in Node on tf.js's wasm backend (the same
// SIMD module, tf.js version and allocation guard the Worker runs), one child process per model and a
// fresh wasm instance per measurement. The figures are the `memory` object of a version in the
// repository index (model-assets/_index.json); docs/memory.md says how they are made and how far off
// they can be. Cached by the model files' digest, so a build measures only what changed.
import { execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { writeWhole } from '../files.mjs'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '../../..')
const CACHE_DIR = join(ROOT, 'node_modules/.cache/warmserve')
// WARMSERVE_MEMORY_CACHE: another cache file (the tests use their own).
const cacheFile = () => process.env.WARMSERVE_MEMORY_CACHE ?? join(CACHE_DIR, 'memory.json')
const BUNDLE = join(CACHE_DIR, 'probe.bundle.mjs')

const version = (pkg) => JSON.parse(readFileSync(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')).version
/** How the figures were made: part of the cache key, so a tf.js upgrade measures again. */
export const METHOD = `node tfjs-backend-wasm@${version('@tensorflow/tfjs-backend-wasm')} simd, fresh instance per run, load and three runs of the rows, least heap to a page by a search from the fill's figure with answers checked, resting bytes by filling the free space (scripts/build/memory/probe.mjs)`

/**
 * The largest wasm heap an isolate can give a model: the cap the Worker puts on the heap
 * (src/runtime/wasm-guard.ts), read from its source so there is one figure.
 */
export function isolateHeapBytes() {
  const source = readFileSync(join(ROOT, 'src/runtime/wasm-guard.ts'), 'utf8')
  const match = /export const WASM_HEAP_MAX_BYTES = ([0-9_ *]+)\n/.exec(source)
  if (!match)
    throw new Error(
      'src/runtime/wasm-guard.ts no longer exports WASM_HEAP_MAX_BYTES as a number: re-check scripts/build/memory/measure.mjs',
    )
  return Function(`return ${match[1].replaceAll('_', '')}`)()
}

/** sha-256 over model.json and its shards, in manifest order: the key of a measurement. */
export function modelDigest(dir) {
  const hash = createHash('sha256')
  const text = readFileSync(join(dir, 'model.json'))
  hash.update(text)
  for (const group of JSON.parse(text.toString('utf8')).weightsManifest ?? []) {
    for (const path of group.paths) hash.update(readFileSync(join(dir, path)))
  }
  return hash.digest('hex')
}

/** The files the last bundle was made from, with their size and mtime, and esbuild's version: BUNDLE's stamp. */
const BUNDLE_INPUTS = `${BUNDLE}.inputs.json`

/** The stamp of what a bundle is made from: this file (the build's options), esbuild, and the bundle's inputs. */
function bundleStamp(inputs) {
  const esbuild = version('esbuild')
  return {
    esbuild,
    files: [fileURLToPath(import.meta.url), ...inputs].map((path) => {
      const { size, mtimeMs } = statSync(path)
      return [path, size, mtimeMs]
    }),
  }
}

/** Whether BUNDLE was made from the files as they are now (none changed since, esbuild the same). */
function bundleCurrent() {
  try {
    const stamp = JSON.parse(readFileSync(BUNDLE_INPUTS, 'utf8'))
    const now = bundleStamp(stamp.files.slice(1).map(([path]) => path))
    return existsSync(BUNDLE) && JSON.stringify(now) === JSON.stringify(stamp)
  } catch {
    return false
  }
}

let bundled
/**
 * The probe with the Worker's runtime modules, bundled by esbuild (as wrangler bundles the Worker) when
 * no process has bundled the same files yet: ~0.75 CPU-s a process otherwise, and a build and its tests
 * start several. Written under a name of its own and renamed, so a process starting the probe never
 * reads a bundle another is writing.
 */
async function probeBundle() {
  bundled ??= (async () => {
    if (bundleCurrent()) return BUNDLE
    const esbuild = await import('esbuild')
    mkdirSync(CACHE_DIR, { recursive: true })
    const partial = `${BUNDLE}.${process.pid}.tmp.mjs`
    const { metafile } = await esbuild.build({
      entryPoints: [join(HERE, 'probe.mjs')],
      outfile: partial,
      metafile: true,
      absWorkingDir: ROOT,
      bundle: true,
      platform: 'node',
      format: 'esm',
      logLevel: 'error',
      // The Emscripten glue is CommonJS and names Node built-ins it does not use here.
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
      plugins: [
        {
          // The Worker imports the .wasm file as a compiled module (wrangler's rule); so does Node here.
          name: 'wasm-module',
          setup(build) {
            build.onResolve({ filter: /\.wasm$/ }, (args) => ({
              path: createRequire(args.resolveDir).resolve(args.path),
              namespace: 'wasm-module',
            }))
            build.onLoad({ filter: /.*/, namespace: 'wasm-module' }, (args) => ({
              contents: `import { readFileSync } from 'node:fs'\nexport default new WebAssembly.Module(readFileSync(${JSON.stringify(args.path)}))`,
              loader: 'js',
            }))
          },
        },
      ],
    })
    // The files it read; the .wasm modules are read when the probe runs, not bundled.
    const inputs = Object.keys(metafile.inputs)
      .filter((path) => !path.includes(':'))
      .map((path) => resolve(ROOT, path))
    renameSync(partial, BUNDLE)
    writeWhole(BUNDLE_INPUTS, JSON.stringify(bundleStamp(inputs)))
    return BUNDLE
  })()
  return bundled
}

function createRequire(dir) {
  return {
    resolve: (path) =>
      execFileSync(process.execPath, ['-p', `require.resolve(${JSON.stringify(path)})`], {
        cwd: dir,
        encoding: 'utf8',
      }).trim(),
  }
}

/** Runs the probe on a version folder in a child process; resolves to its JSON answer. */
export async function probe(dir, { tasks = ['fill'], rows = [1, 4], shapes, hints, batchFixed, stopAboveBytes } = {}) {
  const bundle = await probeBundle()
  const request = JSON.stringify({ dir: resolve(dir), tasks, rows, shapes, hints, batchFixed, stopAboveBytes })
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--max-old-space-size=4096', bundle, request], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('error', reject)
    child.on('close', () => {
      const line = out.trim().split('\n').at(-1)
      let answer
      try {
        answer = JSON.parse(line)
      } catch {
        reject(
          Object.assign(
            new Error(
              `the memory probe failed on ${dir}: ${err.trim().split('\n').slice(-3).join(' ') || 'no answer'}`,
            ),
            { probeDied: true },
          ),
        )
        return
      }
      if (answer.error) reject(new Error(answer.error))
      else resolvePromise(answer)
    })
  })
}

/** The wasm memory's initial size: no cap goes under it, so bisection cannot see below it. */
const INITIAL_HEAP_BYTES = 16 * 2 ** 20

/**
 * The contract's figures (the `memory` object) from the probe's answer: the heap needed at 1 and 4
 * rows is the least heap found by bisection (below the initial 16 MiB, where bisection cannot see,
 * the fill's peak); the resting bytes are the fill's live bytes after the run.
 */
export function memoryFigures({ fill, bisect }, digest) {
  const one = fill[1]
  const base = one.baseHeapBytes
  const least = (rows) => {
    const filled = fill[rows].baseHeapBytes + fill[rows].peakBytes
    const found = bisect?.[rows]
    if (found === undefined) return filled
    return found > INITIAL_HEAP_BYTES ? found : Math.min(filled, found)
  }
  const heapBytes1 = least(1)
  const heapBytes4 = fill[4] ? least(4) : undefined
  const resting = one.restingBytes
  const slope = heapBytes4 !== undefined ? Math.round((heapBytes4 - heapBytes1) / 3) : heapBytes1 - base - resting
  // A row holds at least its input: a small model's growth from 1 to 4 rows may stay within a page.
  const rowBytes = Math.max(slope, Math.ceil(one.inputRowBytes ?? 0))
  // The intercept, so that the figures give the heaps at 1 and at 4 rows. It may be negative: a
  // first row partly fits in blocks the load freed, so the line from 1 to 4 rows meets 0 rows below
  // the resting bytes.
  const activationBytes = heapBytes1 - base - resting - rowBytes
  return {
    weightBytes: one.weightBytes,
    restingBytes: resting,
    activationBytes,
    rowBytes,
    heapBytes1,
    ...(heapBytes4 !== undefined ? { heapBytes4 } : {}),
    method: METHOD,
    digest,
  }
}

function readCache() {
  try {
    return JSON.parse(readFileSync(cacheFile(), 'utf8'))
  } catch {
    return {}
  }
}

/**
 * Written under a name of its own and renamed, as the probe's bundle is: several processes read and write
 * the cache at once (`npm test`'s two lanes seed it as they start), and one reading a half-written file
 * would take it for empty and write back only its own figures.
 */
function writeCache(cache) {
  mkdirSync(dirname(cacheFile()), { recursive: true })
  writeWhole(cacheFile(), `${JSON.stringify(cache, null, 1)}\n`)
}

/**
 * The cache key of a measurement: the model files' digest (modelDigest), how it is measured (METHOD)
 * and the shapes it is measured at. A figure is reused only for the same three.
 */
export function measurementKey(digest, shapes) {
  return createHash('sha256')
    .update(`${digest}\n${METHOD}\n${JSON.stringify(shapes ?? null)}`)
    .digest('hex')
}

/**
 * Adds measurements made elsewhere (cache key → entry, as measureVersion keeps them) to the cache,
 * where it has none under that key; returns how many it added. The zoo's committed figures
 * (scripts/dev/zoo.mjs, seedZooMeasurements) come in this way.
 */
export function seedCache(entries) {
  const cache = readCache()
  const missing = Object.keys(entries).filter((key) => !(key in cache))
  for (const key of missing) cache[key] = entries[key]
  if (missing.length > 0) writeCache(cache)
  return missing.length
}

/**
 * The `memory` object of a version folder, from the cache when its digest and method were measured
 * before, else measured now (a few seconds per model). `shapes` gives dimensions the model leaves open
 * (by input name), e.g. from its config's image size; the cache key includes them.
 * Also returns the backend's own baseline heap, and the cache key.
 */
export async function measureVersion(dir, { shapes } = {}) {
  const digest = modelDigest(dir)
  const key = measurementKey(digest, shapes)
  const cache = readCache()
  if (cache[key]?.error) throw new Error(cache[key].error)
  if (cache[key]) return { ...cache[key], key, cached: true }
  let entry
  try {
    // Past the isolate's heap at one row, the model is refused: four rows are not measured.
    const answer = await probe(dir, { tasks: ['fill', 'bisect'], shapes, stopAboveBytes: isolateHeapBytes() })
    // The fill method's own peaks too, to compare (docs/memory.md's table).
    const fillHeapBytes = Object.fromEntries(
      Object.entries(answer.fill).map(([rows, f]) => [rows, f.baseHeapBytes + f.peakBytes]),
    )
    entry = { memory: memoryFigures(answer, digest), baseHeapBytes: answer.fill[1].baseHeapBytes, fillHeapBytes }
  } catch (error) {
    // The model's own failure is kept too, so that a model only a request can size is not loaded
    // again by every build; a probe that died (killed, out of memory) is not.
    if (error.probeDied) throw error
    entry = { error: error.message }
  }
  // Re-read: builds in parallel (the tests) each add their own entries.
  const latest = readCache()
  latest[key] = entry
  writeCache(latest)
  if (entry.error) throw new Error(entry.error)
  return { ...entry, key, cached: false }
}

export const MB = (bytes) => (bytes / 1e6).toFixed(1)
/** The refusal: a model whose load and one row need more heap than an isolate has. */
export function refusal(name, memory, capBytes = isolateHeapBytes()) {
  if (memory.heapBytes1 <= capBytes) return undefined
  return `${name} needs ~${MB(memory.heapBytes1)} MB of wasm heap to load and run one row (weights ${MB(memory.weightBytes)} MB, resting ${MB(memory.restingBytes)} MB), an isolate can give ${MB(capBytes)} MB`
}

if (import.meta.url === `file://${process.argv[1]}` && existsSync(process.argv[2] ?? '')) {
  const tasks = (process.argv[3] ?? 'fill').split(',')
  console.log(JSON.stringify(await probe(process.argv[2], { tasks }), null, 1))
}
