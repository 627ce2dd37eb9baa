/**
 * Starts the Worker locally, for the end-to-end tests and the bench (and later `npm start`), in two
 * ways that share one handle shape (`{ url, port, startupMs, logs(), stop() }`):
 *
 *  - `startWranglerDev`: `wrangler dev` as a user runs it (`npm run dev`), [build] command included;
 *  - `startBundle`: what `wrangler deploy` would upload (`wrangler deploy --dry-run --outdir`), served
 *    by workerd through Miniflare with wrangler.toml's own bindings (ASSETS with run_worker_first,
 *    the R2 bucket MODELS, vars, compatibility date, cron triggers) — without wrangler dev's proxy.
 *
 * Both bind 127.0.0.1 only, bound every wait by a deadline, and leave nothing behind: stop() ends
 * the processes and removes their scratch folders, and so does this process's exit.
 * Types: scripts/tools/launch.d.mts.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, delimiter, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root. */
export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
const BIN = join(ROOT, 'node_modules', '.bin')
const WRANGLER_TOML = join(ROOT, 'wrangler.toml')

/** Logs kept per server: enough for the bench, which reads every access-log line of a run. */
const MAX_LOG_CHARS = 64 * 1024 * 1024
const DEFAULT_READY_TIMEOUT_MS = 120_000
/** How long a `wrangler deploy --dry-run` may take. */
const BUILD_TIMEOUT_MS = 180_000

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** `promise`, or a rejection saying what did not finish once `ms` have passed (the timer does not outlive it). */
function withDeadline(promise, ms, what) {
  let timer
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), Math.max(0, ms))
  })
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer))
}

// ------------------------------------------------------------------ cleanup on exit

/** Process groups of `wrangler dev`s started here and not stopped yet. */
const groups = new Set()
/** Folders to remove when this process exits. */
const scratch = new Set()

function killGroup(pgid, signal) {
  try {
    process.kill(-pgid, signal)
  } catch {
    // The group is already gone.
  }
}

function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (error) {
    return error.code === 'EPERM'
  }
}

/** Waits (at most `ms`) for every process of the group to end; true if they did. */
async function groupGone(pgid, ms) {
  const deadline = Date.now() + ms
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(100)
  return !groupAlive(pgid)
}

// If this process ends without stop(), wrangler and workerd must not outlive it.
process.once('exit', () => {
  for (const pgid of groups) killGroup(pgid, 'SIGKILL')
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true })
})

/** The process groups of the `wrangler dev`s this process started and has not stopped. */
export function processGroups() {
  return groups
}

function scratchDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  scratch.add(dir)
  return dir
}

function removeScratch(dir) {
  rmSync(dir, { recursive: true, force: true })
  scratch.delete(dir)
}

// ------------------------------------------------------------------ ports, environment, logs

/**
 * `count` distinct ports that were free a moment ago: the OS picks each for a listener on port 0 of
 * 127.0.0.1, all held open together (asked one after another, the OS may name the same port twice).
 */
export async function freePorts(count) {
  const servers = []
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer()
      server.unref()
      servers.push(server)
      await new Promise((resolveListen, reject) => {
        server.once('error', reject)
        server.listen(0, '127.0.0.1', resolveListen)
      })
    }
    return servers.map((server) => {
      const address = server.address()
      if (typeof address !== 'object' || address === null || address.port <= 0)
        throw new Error('could not find a free port')
      return address.port
    })
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolveClose) => server.close(resolveClose))))
  }
}

/** A port that was free a moment ago. */
export async function freePort() {
  return (await freePorts(1))[0]
}

/** True once something accepts TCP connections on 127.0.0.1:`port`. */
function portOpen(port) {
  return new Promise((resolveOpen) => {
    const socket = connect({ host: '127.0.0.1', port })
    const done = (open) => {
      socket.destroy()
      resolveOpen(open)
    }
    socket.setTimeout(1000, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/** The environment a user's shell would give `npm run dev`: without what npm and the test runner add. */
function wranglerEnv(assetsDir) {
  const env = { ...process.env }
  for (const key of Object.keys(env)) {
    if (key.startsWith('npm_') || key.startsWith('VITEST') || ['TEST', 'NODE_ENV', 'MODEL_ASSETS_DIR'].includes(key))
      delete env[key]
  }
  return {
    ...env,
    // npm scripts put node_modules/.bin first, so wrangler runs on the Node 22 the project brings.
    PATH: `${BIN}${delimiter}${env.PATH ?? ''}`,
    CI: 'true',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
    WRANGLER_SEND_METRICS: 'false',
    // Miniflare would fetch Request.cf from the Internet; there is none here.
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    // scripts/build/build-index.mjs writes the index into the repository being served.
    ...(assetsDir !== undefined && { MODEL_ASSETS_DIR: assetsDir }),
  }
}

/** A bounded log: appends until MAX_LOG_CHARS, so offsets into it stay valid for the whole run. */
function logBook(first = '') {
  let text = first
  return {
    add(chunk) {
      if (text.length < MAX_LOG_CHARS) text += typeof chunk === 'string' ? chunk : chunk.toString('utf8')
    },
    read: () => text,
  }
}

/** Waits until `GET /v2/health/live` answers 200, or throws with what went wrong last. */
async function waitLive(url, deadline, gone) {
  let lastProblem = 'no answer yet'
  for (;;) {
    const exit = gone()
    if (exit !== undefined) throw new Error(`${exit} before it was live`)
    if (Date.now() > deadline) throw new Error(`not live at ${url} in time (${lastProblem})`)
    try {
      const response = await fetch(`${url}/v2/health/live`, { signal: AbortSignal.timeout(2_000) })
      await response.arrayBuffer()
      if (response.status === 200) return
      lastProblem = `GET /v2/health/live answered ${response.status}`
    } catch (error) {
      lastProblem = `GET /v2/health/live: ${error.message}`
    }
    await sleep(250)
  }
}

// ------------------------------------------------------------------ CPU priority

/**
 * Sets the CPU priority (a nice value, -20 to 19) of the scheduling group of `pid`, a process started
 * in a session of its own (`detached`). On Linux with autogroup scheduling each session is a group,
 * and the scheduler shares the CPU between groups before it looks at a process's own nice value, so
 * this is the way to run a `wrangler dev` and its workerd in the background. Returns false where it
 * cannot (no autogroup; lowering a nice value without the privilege to).
 */
export function setGroupPriority(pid, nice) {
  return writeGroupPriority(pid, nice) === undefined
}

/** Writes `nice` as the autogroup priority of `pid`: undefined once done, else the error's code. */
function writeGroupPriority(pid, nice) {
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(nice))
    return undefined
  } catch (error) {
    return error.code ?? 'failed'
  }
}

/**
 * setGroupPriority, asked again for up to `ms` when the kernel says "not now": without CAP_SYS_ADMIN it
 * takes one such change every 100 ms, machine-wide (EAGAIN otherwise). Resolves to whether it was set.
 */
export async function setGroupPriorityPatiently(pid, nice, ms = 5_000) {
  const deadline = Date.now() + ms
  for (;;) {
    const error = writeGroupPriority(pid, nice)
    if (error === undefined) return true
    if (error !== 'EAGAIN' || Date.now() > deadline) return false
    await sleep(20)
  }
}

// ------------------------------------------------------------------ wrangler dev

/**
 * Spawns `wrangler dev` on 127.0.0.1 (a free port, its own process group, its own state folder)
 * and resolves once it is ready: with `ready: 'live'` (the default) once `GET /v2/health/live`
 * answers 200; with `ready: 'listening'` once wrangler says "Ready on" and its port accepts
 * connections, without a request, so the first request is a cold one. Rejects, with wrangler's
 * output, if it exits early or is not ready within `readyTimeoutMs`.
 */
export async function startWranglerDev(options = {}) {
  // Between the OS naming a port free and wrangler binding it, another process may take it: then
  // wrangler exits at once with "Address already in use", and new ports are tried (a bounded few).
  for (let attempt = 1; ; attempt++) {
    try {
      return await startWranglerDevOnce(options)
    } catch (error) {
      if (attempt >= PORT_ATTEMPTS || !/Address already in use/.test(error.message)) throw error
    }
  }
}

/** Tries to bind a port this many times before giving up. */
const PORT_ATTEMPTS = 3

async function startWranglerDevOnce(options) {
  const {
    assetsDir,
    vars = {},
    readyTimeoutMs = DEFAULT_READY_TIMEOUT_MS,
    ready = 'live',
    configs = [],
    nice,
  } = options
  const [port, inspectorPort] = await freePorts(2)
  const persistDir = scratchDir('warmserve-dev-state-')
  const args = [
    'dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--inspector-ip',
    '127.0.0.1',
    '--inspector-port',
    String(inspectorPort),
    '--show-interactive-dev-session=false',
    '--persist-to',
    persistDir,
    // Several Workers in one process: the first config is the primary, which serves HTTP and takes
    // --assets and --var; the others are reached only through service bindings.
    ...configs.flatMap((config) => ['-c', resolve(ROOT, config)]),
    ...(assetsDir !== undefined ? ['--assets', assetsDir] : []),
    ...Object.entries(vars).flatMap(([key, value]) => ['--var', `${key}:${value}`]),
  ]
  const logs = logBook(`$ wrangler ${args.join(' ')}\n`)
  const started = performance.now()
  const child = spawn(join(BIN, 'wrangler'), args, {
    cwd: ROOT,
    env: wranglerEnv(assetsDir),
    // Its own process group, so stop() ends workerd too, which wrangler starts as its children.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout.on('data', logs.add)
  child.stderr.on('data', logs.add)
  let exitInfo
  const exited = new Promise((resolveExit) => {
    child.once('exit', (code, signal) => {
      exitInfo = `wrangler dev exited with ${signal ?? `code ${code}`}`
      resolveExit()
    })
    child.once('error', (error) => {
      exitInfo = `wrangler dev failed to start: ${error.message}`
      resolveExit()
    })
  })
  const pgid = child.pid
  if (pgid !== undefined) groups.add(pgid)
  if (pgid !== undefined && nice !== undefined) setGroupPriority(pgid, nice)

  let stopped
  const stop = () =>
    (stopped ??= (async () => {
      if (pgid !== undefined) {
        killGroup(pgid, 'SIGTERM')
        if (!(await groupGone(pgid, 10_000))) {
          killGroup(pgid, 'SIGKILL')
          await groupGone(pgid, 5_000)
        }
        groups.delete(pgid)
      }
      await withDeadline(exited, 5_000, 'wrangler dev exit').catch(() => {})
      removeScratch(persistDir)
    })())

  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + readyTimeoutMs
  try {
    if (ready === 'listening') {
      for (;;) {
        if (exitInfo !== undefined) throw new Error(`${exitInfo} before it was ready`)
        if (Date.now() > deadline) throw new Error(`not ready at ${url} in time`)
        if (/Ready on /.test(logs.read()) && (await portOpen(port))) break
        await sleep(100)
      }
    } else {
      await waitLive(url, deadline, () => exitInfo)
    }
  } catch (error) {
    await stop()
    throw new Error(
      `wrangler dev: ${error.message} (waited at most ${readyTimeoutMs} ms).\n--- wrangler output ---\n${logs.read().slice(-20_000)}`,
    )
  }
  return { url, port, inspectorPort, pgid, startupMs: performance.now() - started, logs: logs.read, stop }
}

// ------------------------------------------------------------------ the deploy bundle

/**
 * `wrangler deploy --dry-run --outdir`: the Worker as `wrangler deploy` would upload it, after the
 * [build] command has indexed `assetsDir` (model-assets/ by default). Throws with wrangler's output
 * if it fails or takes longer than BUILD_TIMEOUT_MS.
 */
export async function buildBundle(options = {}) {
  const { assetsDir, outDir = scratchDir('warmserve-bundle-'), nice, onSpawn, config } = options
  const args = [
    'deploy',
    '--dry-run',
    '--outdir',
    outDir,
    ...(assetsDir !== undefined ? ['--assets', assetsDir] : []),
    ...(config !== undefined ? ['-c', resolve(ROOT, config)] : []),
  ]
  // Asynchronous, so a caller that serves others meanwhile (the e2e global setup) is not blocked.
  // A session of its own, so that its priority can be set (setGroupPriority).
  const child = spawn(join(BIN, 'wrangler'), args, {
    cwd: ROOT,
    env: wranglerEnv(assetsDir),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  if (child.pid !== undefined && nice !== undefined) setGroupPriority(child.pid, nice)
  if (child.pid !== undefined) onSpawn?.(child.pid)
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const timer = setTimeout(() => child.kill('SIGKILL'), BUILD_TIMEOUT_MS)
  const [code, signal] = await new Promise((resolveExit) => child.once('close', (c, s) => resolveExit([c, s])))
  clearTimeout(timer)
  if (code !== 0) {
    throw new Error(`wrangler ${args.join(' ')} failed (${signal ?? `code ${code}`}):\n${output.slice(-20_000)}`)
  }
  return { ...bundleAt(outDir), output }
}

/** Where `npm run check:bundle` writes the deploy bundle, with esbuild's metafile (`bundle-meta.json`) beside it. */
export const CHECKED_BUNDLE = join(ROOT, '.wrangler/dry-run')

/**
 * The deploy bundle in `dir` when it is what a build would make now, else undefined: its metafile
 * (`--metafile`, as `npm run check:bundle` writes it) lists the files esbuild read, and none of them,
 * nor wrangler.toml, package.json or package-lock.json (which pin what node_modules holds), changed
 * after its index.js was written; and each wasm module of `root`'s src/ that index.js imports, named by
 * its content's sha1 as wrangler names them, is the one src/ holds now (the [build] step writes the image
 * codecs there). `.ci/run` builds it just before `npm test`, whose e2e lane then serves it instead of
 * building the same bundle again (about 6 CPU-s: wrangler, esbuild and the [build] step).
 */
export function checkedBundle(dir = CHECKED_BUNDLE, root = ROOT) {
  try {
    const built = statSync(join(dir, 'index.js')).mtimeMs
    const { inputs } = JSON.parse(readFileSync(join(dir, 'bundle-meta.json'), 'utf8'))
    // Namespaced inputs (`node-built-in-modules:fs`, …) are wrangler's own, fixed by its version.
    const files = ['wrangler.toml', 'package.json', 'package-lock.json', ...Object.keys(inputs)].filter(
      (path) => !/^[\w-]+:/.test(path),
    )
    if (files.some((path) => statSync(resolve(root, path)).mtimeMs > built)) return undefined
    // The wasm modules index.js imports, as wrangler names them: `<sha1 of the content>-<file name>`.
    const imported = Object.values(inputs)
      .flatMap((input) => input.imports ?? [])
      .filter((i) => i.external && i.path.endsWith('.wasm'))
      .map((i) => basename(i.path))
    for (const wasm of wasmUnder(join(root, 'src'))) {
      const name = basename(wasm)
      const sha1 = createHash('sha1').update(readFileSync(wasm)).digest('hex')
      if (imported.some((f) => f.endsWith(`-${name}`) && f !== `${sha1}-${name}`)) return undefined
    }
    // Only those: a dry run into the same folder leaves the modules of earlier builds beside them.
    const bundle = bundleAt(dir)
    return {
      ...bundle,
      modules: bundle.modules.filter((m) => m.type !== 'CompiledWasm' || imported.includes(basename(m.path))),
    }
  } catch {
    // No bundle there, no metafile, or an input gone since: not current.
    return undefined
  }
}

function wasmUnder(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.wasm'))
    .map((entry) => join(entry.parentPath, entry.name))
}

/** A deploy bundle already built into `dir` (by buildBundle, or `npm run check:bundle` into .wrangler/dry-run). */
export function bundleAt(dir) {
  // wrangler names the entry after the Worker's main: index.js for warmserve's src/index.ts.
  const files = existsSync(dir) ? readdirSync(dir) : []
  const scripts = files.filter((f) => f.endsWith('.js'))
  const main = scripts.includes('index.js') ? 'index.js' : scripts.length === 1 ? scripts[0] : undefined
  if (main === undefined)
    throw new Error(`no deploy bundle in ${dir} (no index.js): build one with npm run check:bundle`)
  const wasm = files.filter((f) => f.endsWith('.wasm'))
  const modules = [
    { type: 'ESModule', path: join(dir, main) },
    ...wasm.map((f) => ({ type: 'CompiledWasm', path: join(dir, f) })),
  ]
  return { dir, modules, output: '' }
}

/**
 * Serves a deploy bundle (built here unless `bundle` is given, so several instances can share one)
 * with workerd through Miniflare, on 127.0.0.1:`port` (a free one by default), with the bindings
 * wrangler.toml (or `config`, another Worker's) declares plus `vars`. `persistDir` holds R2 and the
 * rest of the local state; two instances given the same one share a bucket. With `inspector`, the
 * Worker's isolate is reachable over the DevTools protocol through Miniflare's inspector proxy on
 * `inspectorPort`, as through wrangler dev's. With `front` (another Worker's wrangler config, its
 * main a plain ES module), that Worker serves HTTP in the same workerd and reaches this one only
 * through its service bindings, as `wrangler dev -c <front> -c wrangler.toml` runs them. Resolves
 * once the Worker is ready (`ready` as for startWranglerDev).
 */
export async function startBundle(options = {}) {
  const {
    assetsDir,
    vars = {},
    readyTimeoutMs = DEFAULT_READY_TIMEOUT_MS,
    ready = 'live',
    config = WRANGLER_TOML,
    inspector = false,
    front,
  } = options
  const started = performance.now()
  const deadline = Date.now() + readyTimeoutMs
  const ownBundle = options.bundle === undefined
  const bundle = options.bundle ?? (await buildBundle({ assetsDir }))
  const ownState = options.persistDir === undefined
  const persistDir = options.persistDir ?? scratchDir('warmserve-bundle-state-')
  const [port, inspectorPort] =
    options.port === undefined ? await freePorts(inspector ? 2 : 1) : [options.port, inspector && (await freePort())]
  const logs = logBook()

  const [{ Miniflare, Log, LogLevel, convertV4MiniflareOptions }, wrangler] = await Promise.all([
    import('miniflare'),
    import('wrangler'),
  ])
  /** A wrangler config as wrangler dev reads it: its name, main, bindings, assets router and cron triggers. */
  const readWorker = (path) => {
    const read = wrangler.unstable_readConfig({ config: path })
    return { name: read.name, ...wrangler.unstable_getMiniflareWorkerOptions(read) }
  }
  const { name, workerOptions } = readWorker(resolve(ROOT, config))
  const inFront = front === undefined ? undefined : readWorker(resolve(ROOT, front))
  const miniflare = new Miniflare(
    convertV4MiniflareOptions({
      // The first Worker serves HTTP.
      workers: [
        ...(inFront === undefined
          ? []
          : [
              {
                ...inFront.workerOptions,
                name: inFront.name,
                modulesRoot: dirname(inFront.main),
                modules: [{ type: 'ESModule', path: inFront.main }],
              },
            ]),
        {
          ...workerOptions,
          name,
          modulesRoot: bundle.dir,
          modules: bundle.modules,
          bindings: { ...workerOptions.bindings, ...vars },
          assets: { ...workerOptions.assets, ...(assetsDir !== undefined && { directory: assetsDir }) },
          // The inspector proxy exposes this Worker's isolate, not the one in front.
          ...(inspector && { unsafeInspectorProxy: true }),
        },
      ],
      host: '127.0.0.1',
      port,
      ...(inspector && { inspectorPort }),
      cf: false,
      resourcePersistencePath: persistDir,
      log: new Log(LogLevel.WARN),
      handleStructuredLogs: ({ message }) => logs.add(`${message}\n`),
    }),
  )
  let stopped
  const stop = () =>
    (stopped ??= (async () => {
      await withDeadline(miniflare.dispose(), 15_000, 'Miniflare.dispose()').catch(() => {})
      if (ownState) removeScratch(persistDir)
      if (ownBundle) removeScratch(bundle.dir)
    })())

  const url = `http://127.0.0.1:${port}`
  try {
    await withDeadline(miniflare.ready, deadline - Date.now(), 'Miniflare start')
    if (ready === 'live') await waitLive(url, deadline, () => undefined)
  } catch (error) {
    await stop()
    throw new Error(
      `the deploy bundle: ${error.message} (waited at most ${readyTimeoutMs} ms).\n--- Worker output ---\n${logs.read().slice(-20_000)}`,
    )
  }

  /** Runs the Worker's scheduled handler once, as the cron would (wrangler.toml's first cron unless given). */
  const scheduled = async (cron = workerOptions.cronTriggers?.[0] ?? '* * * * *') => {
    const worker = await miniflare.getWorker(name)
    const result = await worker.scheduled({ cron, scheduledTime: new Date() })
    return result.outcome
  }
  return {
    url,
    port,
    ...(inspector && { inspectorPort }),
    startupMs: performance.now() - started,
    logs: logs.read,
    stop,
    scheduled,
    miniflare,
    crons: workerOptions.cronTriggers ?? [],
  }
}
