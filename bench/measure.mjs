/**
 * The bench's measurements: autocannon cells and the Worker's own times from its access-log lines,
 * workerd's memory, other load on the machine, the inputs, the floor (tf.js in this process), the
 * Worker's request parsing timed in Node, and the bundle's size. bench/run.mjs decides what to run.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import autocannon from 'autocannon'
import { buildBundle, processGroups, ROOT } from '../scripts/tools/launch.mjs'
import { IMAGE_MODEL, IMAGE_SIZE } from '../scripts/dev/build-image-model.mjs'
import { CONCURRENCY, DURATION, FLOOR_SECONDS, log, QUICK, sleep } from './options.mjs'
import { random } from '../scripts/dev/random.mjs'

const require = createRequire(import.meta.url)

// ------------------------------------------------------------------ src/ paths (update when src/ moves)

/**
 * The Worker's own request-parsing functions that requestParsing() bundles with esbuild, by their
 * place in src/, and the tf.js module it stubs out. The only src/ paths the bench depends on.
 */
const WORKER_PARSING_SOURCE = [
  "export { parseJson } from './src/http/body.ts'",
  "export { InferRequest, parseBody } from './src/protocols/schemas.ts'",
  "export { flatten, toTypedArray } from './src/protocols/tensors.ts'",
  "export { decodeBinary, splitBinary } from './src/protocols/v2/binary.ts'",
  "export { converter } from './src/protocols/datatypes.ts'",
].join('\n')
/** Imports of this module (src/runtime/tf.ts) are replaced by an empty `tf`: parsing stops at the typed array. */
const WORKER_TF_MODULE = /\/runtime\/tf$/

// ------------------------------------------------------------------ the Worker's log lines and memory

/** Parses the Worker's structured log lines (`{"level","event",…}`) out of wrangler's output. */
export function eventsIn(text) {
  const events = []
  for (const line of text.split('\n')) {
    const start = line.indexOf('{"level"')
    const end = line.lastIndexOf('}')
    if (start < 0 || end < start) continue
    try {
      events.push(JSON.parse(line.slice(start, end + 1)))
    } catch {
      // not one of ours
    }
  }
  return events
}

/**
 * The `workerd` processes under wrangler's process tree: `worker`, the one running the Worker (and
 * the assets router in front of it), and `proxy`, the one wrangler puts on the public port to forward
 * requests to it; each with its pid and resident memory in KiB. For a server without a process group
 * of its own (startBundle's: Miniflare runs workerd as a child of this process, with no proxy in
 * front), `worker` is the workerd listening on the server's port itself.
 */
export function workerdProcesses(server) {
  const rows = execFileSync('ps', ['-e', '-o', 'pid=,ppid=,pgid=,rss=,args='], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((line) => {
      const [pid, ppid, pgid, rss, ...args] = line.trim().split(/\s+/)
      return { pid: Number(pid), ppid: Number(ppid), pgid: Number(pgid), rss: Number(rss), args }
    })
  const isWorkerd = (row) => /(^|\/)workerd$/.test(row.args[0] ?? '')
  const listens = (row) => row.args.some((a) => a === `--socket-addr=entry=127.0.0.1:${server.port}`)
  if (server.pgid === undefined) return { worker: rows.filter((row) => isWorkerd(row) && listens(row)), proxy: [] }
  const tree = new Set([server.pgid])
  for (let grew = true; grew;) {
    grew = false
    for (const row of rows) {
      if (!tree.has(row.pid) && (tree.has(row.ppid) || row.pgid === server.pgid)) {
        tree.add(row.pid)
        grew = true
      }
    }
  }
  const workerd = rows.filter((row) => tree.has(row.pid) && isWorkerd(row))
  return { worker: workerd.filter((row) => !listens(row)), proxy: workerd.filter(listens) }
}

/** Resident memory, in MB, of the two kinds of `workerd` process `workerdProcesses` finds. */
export function workerdRss(server) {
  const { worker, proxy } = workerdProcesses(server)
  const mb = (list) => (list.length === 0 ? undefined : list.reduce((sum, row) => sum + row.rss, 0) / 1024)
  return { worker: mb(worker), proxy: mb(proxy) }
}

/**
 * A process's resident memory and its peak, in KiB, from /proc/<pid>/status: VmRSS (the figure `ps`
 * prints as rss) and VmHWM. Read without spawning a process; undefined when the process is gone (or
 * a zombie) or the system has no /proc.
 */
export function procMemoryKiB(pid) {
  let status
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const kib = (field) => new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1]
  const [rss, peak] = [kib('VmRSS'), kib('VmHWM')]
  // A process that has exited but not been reaped (a zombie) has a status without them.
  return rss === undefined || peak === undefined ? undefined : { rss: Number(rss), peak: Number(peak) }
}

/**
 * Resident memory, in KiB, of the processes `pids` (e.g. `workerdProcesses(server).worker`'s): from
 * /proc where there is one, so that sampling it every few milliseconds spawns no `ps` (each one a few
 * tens of ms of CPU); `ps` elsewhere.
 */
export function residentKiB(pids) {
  let total = 0
  for (const pid of pids) {
    total +=
      procMemoryKiB(pid)?.rss ??
      Number(execFileSync('ps', ['-o', 'rss=', '-p', String(pid)], { encoding: 'utf8' }).trim())
  }
  return total
}

// ------------------------------------------------------------------ other load on the machine

const TICKS_PER_SECOND = 100 // USER_HZ on Linux

/** CPU ticks (user + system) of every process that is neither this one nor under a wrangler it started. */
export function foreignTicks() {
  const ticks = new Map()
  let entries = []
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name))
  } catch {
    return ticks
  }
  for (const pid of entries) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const ppid = Number(fields[1])
      const pgid = Number(fields[2])
      if (Number(pid) === process.pid || ppid === process.pid || processGroups().has(pgid)) continue
      ticks.set(pid, Number(fields[11]) + Number(fields[12]))
    } catch {
      // gone meanwhile
    }
  }
  return ticks
}

/** CPU seconds other processes used since `before` (a foreignTicks() snapshot). */
export function foreignCpuSince(before) {
  let total = 0
  for (const [pid, now] of foreignTicks()) total += now - (before.get(pid) ?? now)
  return total / TICKS_PER_SECOND
}

/** Waits (bounded) until the rest of the machine is quiet, so other work does not skew the numbers. */
export async function waitForQuiet(maxSeconds) {
  const deadline = Date.now() + maxSeconds * 1000
  for (;;) {
    const before = foreignTicks()
    await sleep(3000)
    const busy = foreignCpuSince(before) / 3
    if (busy < 0.15) return busy
    if (Date.now() > deadline) {
      log(`other processes still use ${(busy * 100).toFixed(0)}% of a core; measuring anyway (see RESULTS.md)`)
      return busy
    }
    log(`waiting for the machine to go quiet: other processes use ${(busy * 100).toFixed(0)}% of a core`)
    await sleep(7000)
  }
}

// ------------------------------------------------------------------ HTTP

export async function post(url, body) {
  const started = performance.now()
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(120_000),
  })
  const text = await response.text()
  return { status: response.status, text, ms: performance.now() - started, headers: response.headers }
}

export async function getJson(url) {
  const response = await fetch(url, { signal: AbortSignal.timeout(60_000) })
  return { status: response.status, body: await response.json() }
}

/** One autocannon cell: `connections` clients posting `body` (or as `init` says) for `duration` seconds. */
export async function cell(
  url,
  body,
  connections,
  duration,
  init = { method: 'POST', headers: { 'content-type': 'application/json' }, body },
) {
  const result = await autocannon({
    url,
    ...init,
    connections,
    duration,
    timeout: 60,
  })
  const ok = result['2xx']
  return {
    c: connections,
    p50: result.latency.p50,
    p99: result.latency.p99,
    rps: ok / result.duration,
    requests: ok,
    failed: result.non2xx + result.errors + result.timeouts,
  }
}

// ------------------------------------------------------------------ inputs

const nest = (flat, shape) =>
  shape.length === 1
    ? Array.from(flat)
    : Array.from({ length: shape[0] }, (_, i) =>
        nest(flat.slice((i * flat.length) / shape[0], ((i + 1) * flat.length) / shape[0]), shape.slice(1)),
      )

/** One example per model, as the flat values and shape the Node floor uses and the JSON body the Worker gets. */
export function inputFor(model) {
  let flat
  let shape
  if (model === 'iris') {
    flat = [5.1, 3.5, 1.4, 0.2]
    shape = [4]
  } else if (model === 'digits') {
    const holdout = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/digits-holdout.json'), 'utf8'))
    flat = holdout.images[0].map((v) => Number((v / 255).toFixed(4)))
    shape = [28, 28, 1]
  } else if (model === IMAGE_MODEL) {
    const next = random(7)
    flat = Array.from({ length: IMAGE_SIZE * IMAGE_SIZE * 3 }, () => Number(next().toFixed(4)))
    shape = [IMAGE_SIZE, IMAGE_SIZE, 3]
  } else {
    throw new Error(`no input for model ${model}`)
  }
  return { flat, shape, body: JSON.stringify({ instances: [nest(flat, shape)] }) }
}

// ------------------------------------------------------------------ the floor: tf.js in this process

/** Reads a layers model from the assets folder into memory, as the Worker's IOHandler does. */
export function artifactsFrom(dir) {
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'))
  const buffers = json.weightsManifest.flatMap((group) =>
    group.paths.map((p) => {
      const b = readFileSync(join(dir, p))
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)
    }),
  )
  return {
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: buffers,
  }
}

/** Raw tf.js `predictOnBatch` on the same input, in Node, sequentially: what no server can beat. */
export async function nodeFloor(assetsDir, models, backends) {
  const tf = require('@tensorflow/tfjs-core')
  require('@tensorflow/tfjs-backend-cpu')
  const wasm = require('@tensorflow/tfjs-backend-wasm')
  const tfl = require('@tensorflow/tfjs-layers')
  tf.env().set('PROD', true) // no debug checks, and no "install tfjs-node" banner
  wasm.setWasmPaths(`${dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'))}/dist/`)
  const rows = []
  for (const backend of backends) {
    if (!(await tf.setBackend(backend))) throw new Error(`tf.js ${backend} backend failed to start in Node`)
    await tf.ready()
    for (const name of models) {
      const model = await tfl.loadLayersModel(tf.io.fromMemory(artifactsFrom(join(assetsDir, name, '1'))))
      const { flat, shape } = inputFor(name)
      const x = tf.tensor([flat], [1, ...shape], 'float32')
      const once = async () => {
        const started = performance.now()
        const y = model.predictOnBatch(x)
        await y.data()
        y.dispose()
        return performance.now() - started
      }
      for (let i = 0; i < 3; i++) await once()
      const times = []
      const until = performance.now() + FLOOR_SECONDS * 1000
      while ((performance.now() < until || times.length < 5) && times.length < 2000) times.push(await once())
      times.sort((a, b) => a - b)
      const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))]
      const mean = times.reduce((a, b) => a + b, 0) / times.length
      rows.push({ model: name, backend, p50: at(0.5), p99: at(0.99), rps: 1000 / mean, n: times.length })
      log(
        `floor  ${name.padEnd(14)} node/${backend.padEnd(4)} p50 ${at(0.5).toFixed(2)} ms  p99 ${at(0.99).toFixed(2)} ms  (${times.length} runs)`,
      )
      x.dispose()
      model.dispose()
    }
  }
  tf.disposeVariables()
  return rows
}

// ------------------------------------------------------------------ the Worker

/**
 * p50 / p99 / mean of the Worker's own times (sorted, whole ms). The mean of whole-millisecond
 * readings is an unbiased estimate of the mean time, so it resolves what p50 rounds away.
 */
const ownTimes = (own) => ({
  serverP50: own[Math.floor(own.length / 2)],
  serverP99: own[Math.min(own.length - 1, Math.floor(own.length * 0.99))],
  serverMean: own.reduce((a, b) => a + b, 0) / own.length,
})

/** The warm cells at 1, 8, 32 connections; a cell whose queue would outlast it is skipped. */
export async function warmCells(server, url, body, label, init) {
  const cells = []
  let served = 0
  let c1p50
  for (const c of CONCURRENCY) {
    if (c1p50 !== undefined && (c * c1p50) / 1000 > DURATION) {
      log(`warm   ${label} c=${String(c).padEnd(2)} skipped: ${c} × ${c1p50} ms queues past the ${DURATION} s cell`)
      cells.push({ c, skipped: true })
      continue
    }
    const seen = server.events().length
    const r = await cell(url, body, c, DURATION, init)
    await sleep(Math.min(15_000, 500 + c * (r.p50 ?? 0))) // requests still in flight must not run into the next cell
    // The Worker's own time per request, from its access-log line (`{"event":"request","ms":…}`).
    const path = new URL(url).pathname
    const own = server
      .events()
      .slice(seen)
      .filter((e) => e.event === 'request' && e.path === path && typeof e.ms === 'number')
      .map((e) => e.ms)
      .sort((a, b) => a - b)
    if (own.length > 0) Object.assign(r, ownTimes(own))
    if (c === 1) c1p50 = r.p50
    served += r.requests + r.failed
    cells.push(r)
    log(
      `warm   ${label} c=${String(c).padEnd(2)} p50 ${r.p50} ms  p99 ${r.p99} ms  ${r.rps.toFixed(1)} req/s` +
        `${r.serverP50 !== undefined ? `  (in the Worker: p50 ${r.serverP50} ms, p99 ${r.serverP99} ms)` : ''}${r.failed ? `  (${r.failed} failed)` : ''}`,
    )
  }
  return { cells, served, c1p50 }
}

// ------------------------------------------------------------------ baselines: cache off, batching, binary tensors

export const jsonInit = (body) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body })

/** Waits (at most `capMs`) until wrangler's output stops growing: the requests still in flight are done. */
async function drain(server, capMs = 20_000) {
  const deadline = Date.now() + capMs
  let last = -1
  let still = 0
  while (Date.now() < deadline && still < 3) {
    await sleep(250)
    const now = server.logs().length
    still = now === last ? still + 1 : 0
    last = now
  }
}

/** One autocannon cell on `init`, then the Worker's own times for it from its access-log lines. */
export async function measured(server, url, c, init, label) {
  const seen = server.logs().length
  const r = await cell(url, init.body, c, DURATION, init)
  await drain(server)
  const path = new URL(url).pathname
  const events = eventsIn(server.logs().slice(seen))
  const requests = events.filter((e) => e.event === 'request' && e.path === path && typeof e.ms === 'number')
  const own = requests.map((e) => e.ms).sort((a, b) => a - b)
  if (own.length > 0) Object.assign(r, ownTimes(own))
  r.misses = requests.filter((e) => e.cache === 'miss').length
  r.logged = requests.length
  const loads = events.filter((e) => e.event === 'model.loaded')
  if (loads.length > 0) {
    const median = (key) => loads.map((e) => e[key]).sort((a, b) => a - b)[Math.floor(loads.length / 2)]
    r.loads = { n: loads.length, fetchMs: median('fetchMs'), buildMs: median('buildMs'), warmupMs: median('warmupMs') }
  }
  log(
    `${label.padEnd(44)} c=${String(c).padEnd(2)} p50 ${r.p50} ms  p99 ${r.p99} ms  ${r.rps.toFixed(1)} req/s` +
      `${r.serverP50 !== undefined ? `  (in the Worker: p50 ${r.serverP50} ms, p99 ${r.serverP99} ms, mean ${r.serverMean.toFixed(1)} ms)` : ''}${r.failed ? `  (${r.failed} failed)` : ''}`,
  )
  return r
}

export async function postWith(url, init) {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(120_000) })
  return { status: response.status, text: await response.text() }
}

/** Warms `model` up with three predicts; returns the last answer's predictions. */
export async function warmUp(server, model, base = model) {
  let last
  for (let i = 0; i < 3; i++) {
    last = await post(`${server.url}/v1/models/${model}:predict`, inputFor(base).body)
    if (last.status !== 200) throw new Error(`predict on ${model} answered ${last.status}: ${last.text.slice(0, 500)}`)
  }
  return JSON.parse(last.text).predictions
}

export const maxRelDiff = (a, b) => {
  let worst = 0
  a.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b[i]) / Math.max(1e-6, Math.abs(b[i])))))
  return worst
}

/**
 * The pattern the cache exists to avoid: `--var MODEL_CACHE:off`, so every request fetches, builds
 * and warms its model up (src/isolate.ts), against the warm cache's cells of the main runs.

/** The image model's request as the v2 protocol's JSON (flat FP32 `data`) and as its binary extension. */
export function imageBodies(inputName) {
  const { flat, shape } = inputFor(IMAGE_MODEL)
  const dims = [1, ...shape]
  const json = Buffer.from(JSON.stringify({ inputs: [{ name: inputName, shape: dims, datatype: 'FP32', data: flat }] }))
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: inputName, shape: dims, datatype: 'FP32', parameters: { binary_data_size: flat.length * 4 } }],
    }),
  )
  const raw = new Float32Array(flat)
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1)
    throw new Error('this host is big-endian; the binary body would need byte swapping')
  const binary = Buffer.concat([header, Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)])
  return { json, binary, headerLength: header.length, shape: dims }
}

/**
 * One `wrangler dev` (wasm) serving the originals and the batched copies: batched against
 * unbatched at 8 and 32 connections, then the image model's JSON against binary bodies on v2.

/**
 * Request parsing as the Worker does it, timed in this process on the exact bodies the Worker got:
 * the project's own functions (WORKER_PARSING_SOURCE), bundled with esbuild, tf.js stubbed out (parsing stops at the typed array that
 * becomes the tensor, the same for both bodies).
 */
export async function requestParsing({ json, binary, headerLength, shape }, inputName) {
  const outfile = join(ROOT, 'bench', '.work', 'worker-parsing.mjs')
  mkdirSync(dirname(outfile), { recursive: true })
  const esbuild = require('esbuild')
  await esbuild.build({
    stdin: {
      contents: WORKER_PARSING_SOURCE,
      resolveDir: ROOT,
      sourcefile: 'bench-parsing.ts',
      loader: 'ts',
    },
    bundle: true,
    format: 'esm',
    platform: 'node',
    outfile,
    logLevel: 'silent',
    plugins: [
      {
        name: 'no-tfjs',
        setup(build) {
          build.onResolve({ filter: WORKER_TF_MODULE }, () => ({ path: 'tf', namespace: 'stub' }))
          build.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({ contents: 'export const tf = {}', loader: 'js' }))
        },
      },
    ],
  })
  const m = await import(`${pathToFileURL(outfile).href}?${Date.now()}`)
  const spec = { name: inputName, dtype: 'float32', shape: [-1, ...shape.slice(1)] }
  const count = shape.reduce((a, b) => a * b, 1)
  const where = `input '${inputName}'`
  const jsonBytes = new Uint8Array(json.buffer, json.byteOffset, json.byteLength)
  const binBytes = new Uint8Array(binary.buffer, binary.byteOffset, binary.byteLength)
  // Each returns its stages' times: [parse the JSON, validate the body (zod), values, typed array].
  const viaJson = () => {
    const t0 = performance.now()
    const header = m.parseJson(jsonBytes)
    const t1 = performance.now()
    const input = m.parseBody(m.InferRequest, header).inputs[0]
    const t2 = performance.now()
    const flat = m.flatten(input.data, `${where} data`, { left: 4_000_000, limit: 4_000_000 })
    if (flat.values.length !== count) throw new Error('JSON body: wrong element count')
    const t3 = performance.now()
    const out = m.toTypedArray(
      spec,
      { shape: input.shape, values: flat.values },
      `${where} data`,
      m.converter(input.datatype, spec.dtype, where),
    )
    const t4 = performance.now()
    return { out, stages: [t1 - t0, t2 - t1, t3 - t2, t4 - t3], total: t4 - t0 }
  }
  const viaBinary = () => {
    const t0 = performance.now()
    const header = m.parseJson(binBytes.subarray(0, headerLength), 'inference header')
    const t1 = performance.now()
    const body = m.parseBody(m.InferRequest, header)
    const t2 = performance.now()
    const raws = m.splitBinary(
      body.inputs.map((i) => i.parameters?.binary_data_size),
      binBytes.subarray(headerLength),
    )
    const input = body.inputs[0]
    const values = m.decodeBinary(input.datatype, raws[0], count, `${where} binary data`)
    const t3 = performance.now()
    const out = m.toTypedArray(
      spec,
      { shape: input.shape, values },
      `${where} data`,
      m.converter(input.datatype, spec.dtype, where),
    )
    const t4 = performance.now()
    return { out, stages: [t1 - t0, t2 - t1, t3 - t2, t4 - t3], total: t4 - t0 }
  }
  const a = viaJson().out
  const b = viaBinary().out
  if (a.length !== b.length || a.some((v, i) => v !== b[i]))
    throw new Error('JSON and binary bodies parse to different tensors')
  for (let i = 0; i < 20; i++) (viaJson(), viaBinary())
  const ITERATIONS = QUICK ? 50 : 200
  const runs = { json: [], binary: [] }
  for (let i = 0; i < ITERATIONS; i++) {
    runs.json.push(viaJson())
    runs.binary.push(viaBinary())
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
  const summary = (list) => ({
    median: median(list.map((r) => r.total)),
    p90: [...list.map((r) => r.total)].sort((x, y) => x - y)[Math.floor(list.length * 0.9)],
    stages: [0, 1, 2, 3].map((s) => median(list.map((r) => r.stages[s]))),
  })
  const result = { iterations: ITERATIONS, json: summary(runs.json), binary: summary(runs.binary) }
  log(
    `parsing ${IMAGE_MODEL} request in Node (the Worker's own functions): JSON median ${result.json.median.toFixed(2)} ms, ` +
      `binary ${result.binary.median.toFixed(3)} ms (${(result.json.median / result.binary.median).toFixed(1)}×), ${ITERATIONS} iterations each`,
  )
  return result
}

/** `wrangler deploy --dry-run`: the bundle's size as wrangler reports it (Total Upload / gzip). */
export async function bundleSize(assetsDir) {
  let outdir
  try {
    const bundle = await buildBundle({ assetsDir })
    outdir = bundle.dir
    const match = /Total Upload:\s*([\d.]+)\s*KiB\s*\/\s*gzip:\s*([\d.]+)\s*KiB/.exec(bundle.output)
    if (!match) throw new Error(`no "Total Upload" line in: ${bundle.output.slice(-1000)}`)
    const files = readdirSync(outdir).filter((f) => !f.endsWith('.map') && !f.endsWith('.md'))
    const result = {
      totalKiB: Number(match[1]),
      gzipKiB: Number(match[2]),
      files: files.map((f) => ({ name: f, bytes: statSync(join(outdir, f)).size })),
    }
    log(`bundle: ${result.totalKiB} KiB, ${result.gzipKiB} KiB gzipped (wrangler deploy --dry-run)`)
    return result
  } catch (error) {
    log(`  ! wrangler deploy --dry-run failed: ${String(error?.message ?? error).slice(0, 500)}`)
    return undefined
  } finally {
    if (outdir) rmSync(outdir, { recursive: true, force: true })
  }
}
