#!/usr/bin/env node
/**
 * `npm run bench`: what serving a model from the Worker costs, measured over loopback against a
 * real `wrangler dev`, next to the floor — the same tf.js predict run directly in this Node process.
 *
 * For each model (iris, digits, and the MobileNet-style image model built by
 * scripts/build-image-model.mjs) and each backend (`wasm`, `cpu`), on a fresh `wrangler dev`:
 *   - cold start: the first prediction after wrangler is up, with the Worker's own breakdown
 *     (fetch / build / warmup) from its `model.loaded` log line;
 *   - warm latency p50/p99 and throughput at 1, 8 and 32 concurrent connections (autocannon) on
 *     TF Serving's `POST /v1/models/{m}:predict`, batch 1, JSON;
 *   - workerd's resident memory: idle, after the load, after ≥ 1 000 requests (and with all
 *     three models loaded), against the isolate's 128 MB.
 * Then the baselines, each on its own `wrangler dev` (wasm):
 *   - the model cache off (`--var MODEL_CACHE:off`: fetch + build + warmup per request) for digits
 *     and iris at 1 and 8 connections, against the warm cells;
 *   - batching: copies of digits and the image model with `batching` in their config.json, against
 *     the originals at 8 and 32 connections, same requests;
 *   - the image model over v2 with a JSON body against the binary tensor extension at 1 and 8
 *     connections, and the request parsing of both bodies timed here with the Worker's own
 *     functions (bundled by esbuild into bench/.work/worker-parsing.mjs);
 *   - the bundle's size from `wrangler deploy --dry-run`.
 * RESULTS.md opens with issue 5's targets, measured, met or missed and by how much.
 * Writes bench/RESULTS.md and bench/latency.svg. Binds 127.0.0.1 only; every wait is bounded;
 * wrangler's process group is killed at the end, on error and on Ctrl-C.
 *
 * Usage: npm run bench [-- --quick] [-- --duration SECONDS] [-- --models iris,digits] [-- --backends wasm]
 *        npm run bench -- --render   (rewrites the report from the last run's bench/.work/results.json)
 *        npm run bench -- --extras-only   (only the baselines: no floor, no per-model runs; for checking)
 */
import { execFileSync, spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { connect, createServer } from 'node:net'
import { cpus, tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import autocannon from 'autocannon'
import { buildImageModel, IMAGE_MODEL, IMAGE_MODEL_DIR, IMAGE_SIZE } from '../scripts/build-image-model.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = join(ROOT, 'node_modules', '.bin')
const require = createRequire(import.meta.url)

// ------------------------------------------------------------------ options

const argv = process.argv.slice(2)
const flag = (name) => argv.includes(`--${name}`)
const option = (name, fallback) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : fallback
}
const QUICK = flag('quick')
/** Seconds per warm cell. */
const DURATION = Number(option('duration', QUICK ? 2 : 6))
const CONCURRENCY = [1, 8, 32]
const MEMORY_REQUESTS = QUICK ? 100 : 1000
/** The most a top-up to MEMORY_REQUESTS may take. */
const MEMORY_TOPUP_CAP_S = QUICK ? 5 : 25
const FLOOR_SECONDS = QUICK ? 1 : 3
const ISOLATE_LIMIT_MB = 128
const MODELS = option('models', `iris,digits,${IMAGE_MODEL}`).split(',')
const BACKENDS = option('backends', 'wasm,cpu').split(',')

const log = (line) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// ------------------------------------------------------------------ processes (always cleaned up)

const groups = new Set()

function killGroup(pgid, signal) {
  try {
    process.kill(-pgid, signal)
  } catch {
    // already gone
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

const scratch = new Set()

process.on('exit', () => {
  for (const pgid of groups) killGroup(pgid, 'SIGKILL')
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true })
})
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    log(`${signal}: stopping`)
    process.exit(130)
  })
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function portOpen(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    const done = (open) => {
      socket.destroy()
      resolve(open)
    }
    socket.setTimeout(1000, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/** Parses the Worker's structured log lines (`{"level","event",…}`) out of wrangler's output. */
function eventsIn(text) {
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
 * Starts `wrangler dev` on a free port of 127.0.0.1, serving `assetsDir`, and resolves once it
 * says it is ready and its port accepts connections — without sending it a request, so the
 * first request is a cold one.
 */
/** The environment wrangler runs in: Node 22 from node_modules/.bin, no colours, no metrics, the temp assets. */
function wranglerEnv(assetsDir) {
  const env = { ...process.env }
  for (const key of Object.keys(env)) if (key.startsWith('npm_')) delete env[key]
  return Object.assign(env, {
    PATH: `${BIN}${delimiter}${process.env.PATH ?? ''}`,
    MODEL_ASSETS_DIR: assetsDir,
    CI: 'true',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
    WRANGLER_SEND_METRICS: 'false',
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  })
}

async function startWrangler({ assetsDir, backend, vars = {} }) {
  const port = await freePort()
  const inspectorPort = await freePort()
  const persist = mkdtempSync(join(tmpdir(), 'warmserve-bench-state-'))
  scratch.add(persist)
  const args = [
    'dev',
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--inspector-ip', '127.0.0.1',
    '--inspector-port', String(inspectorPort),
    '--show-interactive-dev-session=false',
    '--persist-to', persist,
    '--assets', assetsDir,
    '--var', `TF_BACKEND:${backend}`,
    ...Object.entries(vars).flatMap(([key, value]) => ['--var', `${key}:${value}`]),
  ]
  const env = wranglerEnv(assetsDir)
  const started = performance.now()
  const child = spawn(join(BIN, 'wrangler'), args, { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  const pgid = child.pid
  groups.add(pgid)
  let output = ''
  const record = (chunk) => {
    if (output.length < 64 * 1024 * 1024) output += chunk.toString('utf8')
  }
  child.stdout.on('data', record)
  child.stderr.on('data', record)
  let exited
  child.once('exit', (code, signal) => (exited = signal ?? `code ${code}`))

  const stop = async () => {
    killGroup(pgid, 'SIGTERM')
    for (let deadline = Date.now() + 8000; groupAlive(pgid) && Date.now() < deadline; ) await sleep(100)
    if (groupAlive(pgid)) killGroup(pgid, 'SIGKILL')
    for (let deadline = Date.now() + 4000; groupAlive(pgid) && Date.now() < deadline; ) await sleep(100)
    groups.delete(pgid)
    rmSync(persist, { recursive: true, force: true })
    scratch.delete(persist)
  }

  const deadline = Date.now() + 120_000
  for (;;) {
    if (exited !== undefined) {
      await stop()
      throw new Error(`wrangler dev exited (${exited}) before it was ready:\n${output.slice(-4000)}`)
    }
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`wrangler dev was not ready within 120 s:\n${output.slice(-4000)}`)
    }
    if (/Ready on /.test(output) && (await portOpen(port))) break
    await sleep(100)
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pgid,
    startupMs: performance.now() - started,
    output: () => output,
    events: () => eventsIn(output),
    stop,
  }
}

/**
 * Resident memory, in MB, of the two `workerd` processes under wrangler's process tree: `worker`,
 * the one running the Worker (and the assets router in front of it), and `proxy`, the one wrangler
 * puts on the public port to forward requests to it.
 */
function workerdRss(server) {
  const rows = execFileSync('ps', ['-e', '-o', 'pid=,ppid=,pgid=,rss=,args='], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((line) => {
      const [pid, ppid, pgid, rss, ...args] = line.trim().split(/\s+/)
      return { pid: Number(pid), ppid: Number(ppid), pgid: Number(pgid), rss: Number(rss), args }
    })
  const tree = new Set([server.pgid])
  for (let grew = true; grew; ) {
    grew = false
    for (const row of rows) {
      if (!tree.has(row.pid) && (tree.has(row.ppid) || row.pgid === server.pgid)) {
        tree.add(row.pid)
        grew = true
      }
    }
  }
  const workerd = rows.filter((row) => tree.has(row.pid) && /(^|\/)workerd$/.test(row.args[0] ?? ''))
  const isProxy = (row) => row.args.some((a) => a === `--socket-addr=entry=127.0.0.1:${server.port}`)
  const mb = (list) => (list.length === 0 ? undefined : list.reduce((sum, row) => sum + row.rss, 0) / 1024)
  return { worker: mb(workerd.filter((row) => !isProxy(row))), proxy: mb(workerd.filter(isProxy)) }
}

// ------------------------------------------------------------------ other load on the machine

const TICKS_PER_SECOND = 100 // USER_HZ on Linux

/** CPU ticks (user + system) of every process that is neither this one nor under a wrangler it started. */
function foreignTicks() {
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
      if (Number(pid) === process.pid || ppid === process.pid || groups.has(pgid)) continue
      ticks.set(pid, Number(fields[11]) + Number(fields[12]))
    } catch {
      // gone meanwhile
    }
  }
  return ticks
}

/** CPU seconds other processes used since `before` (a foreignTicks() snapshot). */
function foreignCpuSince(before) {
  let total = 0
  for (const [pid, now] of foreignTicks()) total += now - (before.get(pid) ?? now)
  return total / TICKS_PER_SECOND
}

/** Waits (bounded) until the rest of the machine is quiet, so other work does not skew the numbers. */
async function waitForQuiet(maxSeconds) {
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

async function post(url, body) {
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

async function getJson(url) {
  const response = await fetch(url, { signal: AbortSignal.timeout(60_000) })
  return { status: response.status, body: await response.json() }
}

/** One autocannon cell: `connections` clients posting `body` (or as `init` says) for `duration` seconds. */
async function cell(url, body, connections, duration, init = { method: 'POST', headers: { 'content-type': 'application/json' }, body }) {
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

/** mulberry32: seeded floats in [0, 1). */
function random(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = Math.imul(a ^ (a >>> 15), a | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const nest = (flat, shape) =>
  shape.length === 1 ? Array.from(flat) : Array.from({ length: shape[0] }, (_, i) => nest(flat.slice((i * flat.length) / shape[0], ((i + 1) * flat.length) / shape[0]), shape.slice(1)))

/** One example per model, as the flat values and shape the Node floor uses and the JSON body the Worker gets. */
function inputFor(model) {
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
function artifactsFrom(dir) {
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'))
  const buffers = json.weightsManifest.flatMap((group) =>
    group.paths.map((p) => {
      const b = readFileSync(join(dir, p))
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)
    }),
  )
  return { modelTopology: json.modelTopology, weightSpecs: json.weightsManifest.flatMap((g) => g.weights), weightData: buffers }
}

/** Raw tf.js `predictOnBatch` on the same input, in Node, sequentially: what no server can beat. */
async function nodeFloor(assetsDir, models, backends) {
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
      log(`floor  ${name.padEnd(14)} node/${backend.padEnd(4)} p50 ${at(0.5).toFixed(2)} ms  p99 ${at(0.99).toFixed(2)} ms  (${times.length} runs)`)
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
async function warmCells(server, url, body, label, init) {
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

/**
 * Cold start, warm cells and memory of one model on one backend, on a fresh `wrangler dev`.
 * With `control`, also the same cells on `GET /v2/health/live` (no model: what wrangler dev and the
 * app cost per request) and the memory 1 000 such requests add.
 */
async function workerRun(assetsDir, model, backend, { loadOthers, control }) {
  const foreignBefore = foreignTicks()
  const began = performance.now()
  const server = await startWrangler({ assetsDir, backend })
  try {
    const label = `${model.padEnd(14)} worker/${backend.padEnd(4)}`
    const idle = workerdRss(server)
    const { body } = inputFor(model)
    const predictUrl = `${server.url}/v1/models/${model}:predict`

    const cold = await post(predictUrl, body)
    if (cold.status !== 200) throw new Error(`first predict on ${model} answered ${cold.status}: ${cold.text.slice(0, 500)}`)
    const ready = await getJson(`${server.url}/v2/health/ready`)
    if (ready.status !== 200) throw new Error(`/v2/health/ready answered ${ready.status}: ${JSON.stringify(ready.body)}`)
    const actual = ready.body.backend
    await sleep(300) // let wrangler flush the Worker's log lines
    const loaded = server.events().find((e) => e.event === 'model.loaded' && String(e.model).startsWith(`${model}/`))
    const fallback = server.events().find((e) => e.event === 'backend.fallback')
    const afterLoad = workerdRss(server)
    log(
      `cold   ${label} (runs on ${actual}) wrangler ready in ${(server.startupMs / 1000).toFixed(1)} s, first predict ${cold.ms.toFixed(0)} ms ` +
        `(fetch ${loaded?.fetchMs} / build ${loaded?.buildMs} / warmup ${loaded?.warmupMs} ms), worker RSS ${idle.worker?.toFixed(0)} → ${afterLoad.worker?.toFixed(0)} MB`,
    )
    if (actual !== backend) {
      log(`  ! asked for TF_BACKEND=${backend} but the Worker runs on ${actual}${fallback ? ` (fallback: ${fallback.reason})` : ' (is TF_BACKEND wired to configureBackend?)'}`)
    }

    // With every model loaded (the last model's run): what the isolate holds with all of them built.
    let all
    if (loadOthers.length > 0) {
      for (const other of loadOthers) {
        const r = await post(`${server.url}/v1/models/${other}:predict`, inputFor(other).body)
        if (r.status !== 200) throw new Error(`predict on ${other} answered ${r.status}`)
      }
      await sleep(300)
      all = workerdRss(server)
      log(`memory all models   worker/${backend.padEnd(4)} worker RSS with ${[model, ...loadOthers].join(', ')} loaded: ${all.worker?.toFixed(0)} MB`)
    }

    for (let i = 0; i < 3; i++) await post(predictUrl, body) // past the first-inference effects
    const warm = await warmCells(server, predictUrl, body, label)
    let served = 4 + warm.served

    // Top up to MEMORY_REQUESTS served (bounded in time), then read the memory.
    if (served < MEMORY_REQUESTS) {
      const perRequestS = Math.max(0.001, (warm.c1p50 ?? 1) / 1000)
      const seconds = Math.min(MEMORY_TOPUP_CAP_S, Math.ceil(((MEMORY_REQUESTS - served) * perRequestS) / 4) + 1)
      const r = await cell(predictUrl, body, 4, seconds)
      served += r.requests + r.failed
      await sleep(Math.min(10_000, 500 + 4 * (r.p50 ?? 0)))
    }
    const afterRequests = workerdRss(server)
    log(`memory ${label} worker RSS after ${served} requests: ${afterRequests.worker?.toFixed(0)} MB (proxy ${afterRequests.proxy?.toFixed(0)} MB)`)

    let controlResult
    if (control) {
      const liveUrl = `${server.url}/v2/health/live`
      const live = await warmCells(server, liveUrl, undefined, `${'(no model)'.padEnd(14)} worker/${backend.padEnd(4)}`, { method: 'GET' })
      const before = workerdRss(server)
      const r = await autocannon({ url: liveUrl, connections: 8, amount: MEMORY_REQUESTS, timeout: 60 })
      await sleep(500)
      const after = workerdRss(server)
      controlResult = { cells: live.cells, requests: r['2xx'], workerGrowthMb: after.worker - before.worker, proxyGrowthMb: after.proxy - before.proxy }
      log(
        `memory (no model)     worker/${backend.padEnd(4)} ${r['2xx']} × GET /v2/health/live: worker RSS +${controlResult.workerGrowthMb.toFixed(0)} MB, proxy +${controlResult.proxyGrowthMb.toFixed(0)} MB`,
      )
    }

    const failures = server.events().filter((e) => e.level === 'error')
    if (failures.length > 0) log(`  ! the Worker logged ${failures.length} error line(s): ${JSON.stringify(failures[0]).slice(0, 300)}`)
    return {
      model,
      backend,
      actual,
      fallback: fallback?.reason,
      startupMs: server.startupMs,
      coldMs: cold.ms,
      loaded,
      idle,
      afterLoad,
      afterRequests,
      served,
      all,
      cells: warm.cells,
      control: controlResult,
      foreignCpuS: foreignCpuSince(foreignBefore),
      wallS: (performance.now() - began) / 1000,
    }
  } finally {
    await server.stop()
  }
}

// ------------------------------------------------------------------ baselines: cache off, batching, binary tensors

const jsonInit = (body) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body })

/** Waits (at most `capMs`) until wrangler's output stops growing: the requests still in flight are done. */
async function drain(server, capMs = 20_000) {
  const deadline = Date.now() + capMs
  let last = -1
  let still = 0
  while (Date.now() < deadline && still < 3) {
    await sleep(250)
    const now = server.output().length
    still = now === last ? still + 1 : 0
    last = now
  }
}

/** One autocannon cell on `init`, then the Worker's own times for it from its access-log lines. */
async function measured(server, url, c, init, label) {
  const seen = server.output().length
  const r = await cell(url, init.body, c, DURATION, init)
  await drain(server)
  const path = new URL(url).pathname
  const events = eventsIn(server.output().slice(seen))
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

async function postWith(url, init) {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(120_000) })
  return { status: response.status, text: await response.text() }
}

/** Warms `model` up with three predicts; returns the last answer's predictions. */
async function warmUp(server, model, base = model) {
  let last
  for (let i = 0; i < 3; i++) {
    last = await post(`${server.url}/v1/models/${model}:predict`, inputFor(base).body)
    if (last.status !== 200) throw new Error(`predict on ${model} answered ${last.status}: ${last.text.slice(0, 500)}`)
  }
  return JSON.parse(last.text).predictions
}

const maxRelDiff = (a, b) => {
  let worst = 0
  a.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b[i]) / Math.max(1e-6, Math.abs(b[i])))))
  return worst
}

/**
 * The pattern the cache exists to avoid: `--var MODEL_CACHE:off`, so every request fetches, builds
 * and warms its model up (src/model/models.ts), against the warm cache's cells of the main runs.
 */
async function cacheOffRun(assetsDir) {
  const models = ['digits', 'iris'].filter((m) => MODELS.includes(m))
  if (models.length === 0) return undefined
  const server = await startWrangler({ assetsDir, backend: 'wasm', vars: { MODEL_CACHE: 'off' } })
  try {
    const cells = []
    for (const model of models) {
      await warmUp(server, model)
      for (const c of [1, 8]) {
        const r = await measured(server, `${server.url}/v1/models/${model}:predict`, c, jsonInit(inputFor(model).body), `cache off ${model.padEnd(14)} worker/wasm`)
        if (r.logged > 0 && r.misses !== r.logged) log(`  ! MODEL_CACHE=off, yet ${r.logged - r.misses} of ${r.logged} requests were not cache misses`)
        cells.push({ model, ...r })
      }
    }
    const actual = (await getJson(`${server.url}/v2/health/ready`)).body.backend
    return { actual, cells }
  } finally {
    await server.stop()
  }
}

/** The batched copies of digits and the image model served next to the originals (their config.json). */
const BATCHED = [
  { name: 'digits-batched', base: 'digits', batching: { max_batch_size: 32, max_queue_delay_ms: 0 } },
  { name: 'digits-batched-2ms', base: 'digits', batching: { max_batch_size: 32, max_queue_delay_ms: 2 } },
  { name: `${IMAGE_MODEL}-batched`, base: IMAGE_MODEL, batching: { max_batch_size: 8, max_queue_delay_ms: 0 } },
  { name: `${IMAGE_MODEL}-batched-16`, base: IMAGE_MODEL, batching: { max_batch_size: 16, max_queue_delay_ms: 2 } },
]
const BATCH_CONCURRENCY = [8, 32]

/** The image model's request as the v2 protocol's JSON (flat FP32 `data`) and as its binary extension. */
function imageBodies(inputName) {
  const { flat, shape } = inputFor(IMAGE_MODEL)
  const dims = [1, ...shape]
  const json = Buffer.from(JSON.stringify({ inputs: [{ name: inputName, shape: dims, datatype: 'FP32', data: flat }] }))
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: inputName, shape: dims, datatype: 'FP32', parameters: { binary_data_size: flat.length * 4 } }] }))
  const raw = new Float32Array(flat)
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('this host is big-endian; the binary body would need byte swapping')
  const binary = Buffer.concat([header, Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)])
  return { json, binary, headerLength: header.length, shape: dims }
}

/**
 * One `wrangler dev` (wasm) serving the originals and the batched copies: batched against
 * unbatched at 8 and 32 connections, then the image model's JSON against binary bodies on v2.
 */
async function batchingAndBinaryRun(assetsDir) {
  const variants = BATCHED.filter((v) => MODELS.includes(v.base))
  for (const v of variants) {
    cpSync(join(assetsDir, v.base, '1'), join(assetsDir, v.name, '1'), { recursive: true })
    writeFileSync(join(assetsDir, v.name, 'config.json'), `${JSON.stringify({ batching: v.batching })}\n`)
  }
  const server = await startWrangler({ assetsDir, backend: 'wasm' })
  try {
    const actual = (await getJson(`${server.url}/v2/health/ready`)).body.backend
    const batching = []
    for (const base of ['digits', IMAGE_MODEL].filter((m) => MODELS.includes(m))) {
      const reference = (await warmUp(server, base)).flat()
      for (const v of variants.filter((x) => x.base === base)) {
        const got = (await warmUp(server, v.name, base)).flat()
        const diff = maxRelDiff(got, reference)
        if (diff > 1e-4) log(`  ! ${v.name} answered differently from ${base}: max relative difference ${diff}`)
      }
      for (const c of BATCH_CONCURRENCY) {
        for (const model of [base, ...variants.filter((x) => x.base === base).map((x) => x.name)]) {
          const r = await measured(server, `${server.url}/v1/models/${model}:predict`, c, jsonInit(inputFor(base).body), `batching ${model.padEnd(20)} worker/wasm`)
          batching.push({ base, model, batchingConfig: variants.find((x) => x.name === model)?.batching, ...r })
        }
      }
    }
    const off = server.events().filter((e) => e.event === 'model.batching_off')
    for (const e of off) log(`  ! ${e.model} stopped batching: ${e.reason}`)

    let binary
    if (MODELS.includes(IMAGE_MODEL)) {
      const meta = await getJson(`${server.url}/v2/models/${IMAGE_MODEL}`)
      const inputName = meta.body.inputs[0].name
      const bodies = imageBodies(inputName)
      const url = `${server.url}/v2/models/${IMAGE_MODEL}/infer`
      const inits = {
        json: jsonInit(bodies.json),
        binary: {
          method: 'POST',
          headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(bodies.headerLength) },
          body: bodies.binary,
        },
      }
      const answers = {}
      for (const [kind, init] of Object.entries(inits)) {
        const r = await postWith(url, init)
        if (r.status !== 200) throw new Error(`v2 infer on ${IMAGE_MODEL} with a ${kind} body answered ${r.status}: ${r.text.slice(0, 500)}`)
        answers[kind] = JSON.parse(r.text).outputs[0].data
        await postWith(url, init)
      }
      const agreement = maxRelDiff(answers.binary, answers.json)
      log(`binary ${IMAGE_MODEL}: JSON body ${bodies.json.length} B, binary body ${bodies.binary.length} B; answers agree within ${agreement.toExponential(1)} (relative)`)
      const cells = []
      for (const c of [1, 8]) {
        for (const [kind, init] of Object.entries(inits)) cells.push({ kind, ...(await measured(server, url, c, init, `v2 infer ${IMAGE_MODEL} ${kind} body worker/wasm`)) })
      }
      binary = { inputName, jsonBytes: bodies.json.length, binaryBytes: bodies.binary.length, headerLength: bodies.headerLength, agreement, cells, bodies }
    }
    return { actual, batching, batchingOff: off.map((e) => ({ model: e.model, reason: e.reason })), binary }
  } finally {
    await server.stop()
  }
}

/**
 * Request parsing as the Worker does it, timed in this process on the exact bodies the Worker got:
 * the project's own functions (src/body.ts, src/schemas.ts, src/tensors.ts, src/binary.ts,
 * src/datatypes.ts), bundled with esbuild, tf.js stubbed out (parsing stops at the typed array that
 * becomes the tensor, the same for both bodies).
 */
async function requestParsing({ json, binary, headerLength, shape }, inputName) {
  const outfile = join(ROOT, 'bench', '.work', 'worker-parsing.mjs')
  mkdirSync(dirname(outfile), { recursive: true })
  const esbuild = require('esbuild')
  await esbuild.build({
    stdin: {
      contents: [
        "export { parseJson } from './src/body.ts'",
        "export { InferRequest, parseBody } from './src/schemas.ts'",
        "export { flatten, toTypedArray } from './src/tensors.ts'",
        "export { decodeBinary, splitBinary } from './src/binary.ts'",
        "export { converter } from './src/datatypes.ts'",
      ].join('\n'),
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
          build.onResolve({ filter: /\/model\/tf$/ }, () => ({ path: 'tf', namespace: 'stub' }))
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
    const out = m.toTypedArray(spec, { shape: input.shape, values: flat.values }, `${where} data`, m.converter(input.datatype, spec.dtype, where))
    const t4 = performance.now()
    return { out, stages: [t1 - t0, t2 - t1, t3 - t2, t4 - t3], total: t4 - t0 }
  }
  const viaBinary = () => {
    const t0 = performance.now()
    const header = m.parseJson(binBytes.subarray(0, headerLength), 'inference header')
    const t1 = performance.now()
    const body = m.parseBody(m.InferRequest, header)
    const t2 = performance.now()
    const raws = m.splitBinary(body.inputs.map((i) => i.parameters?.binary_data_size), binBytes.subarray(headerLength))
    const input = body.inputs[0]
    const values = m.decodeBinary(input.datatype, raws[0], count, `${where} binary data`)
    const t3 = performance.now()
    const out = m.toTypedArray(spec, { shape: input.shape, values }, `${where} data`, m.converter(input.datatype, spec.dtype, where))
    const t4 = performance.now()
    return { out, stages: [t1 - t0, t2 - t1, t3 - t2, t4 - t3], total: t4 - t0 }
  }
  const a = viaJson().out
  const b = viaBinary().out
  if (a.length !== b.length || a.some((v, i) => v !== b[i])) throw new Error('JSON and binary bodies parse to different tensors')
  for (let i = 0; i < 20; i++) viaJson(), viaBinary()
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
function bundleSize(assetsDir) {
  const outdir = mkdtempSync(join(tmpdir(), 'warmserve-bench-bundle-'))
  scratch.add(outdir)
  try {
    const out = execFileSync(join(BIN, 'wrangler'), ['deploy', '--dry-run', '--outdir', outdir, '--assets', assetsDir], {
      cwd: ROOT,
      env: wranglerEnv(assetsDir),
      encoding: 'utf8',
      timeout: 120_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const match = /Total Upload:\s*([\d.]+)\s*KiB\s*\/\s*gzip:\s*([\d.]+)\s*KiB/.exec(out)
    if (!match) throw new Error(`no "Total Upload" line in: ${out.slice(-1000)}`)
    const files = readdirSync(outdir).filter((f) => !f.endsWith('.map') && !f.endsWith('.md'))
    const result = { totalKiB: Number(match[1]), gzipKiB: Number(match[2]), files: files.map((f) => ({ name: f, bytes: statSync(join(outdir, f)).size })) }
    log(`bundle: ${result.totalKiB} KiB, ${result.gzipKiB} KiB gzipped (wrangler deploy --dry-run)`)
    return result
  } catch (error) {
    log(`  ! wrangler deploy --dry-run failed: ${String(error?.message ?? error).slice(0, 500)}`)
    return undefined
  } finally {
    rmSync(outdir, { recursive: true, force: true })
    scratch.delete(outdir)
  }
}

// ------------------------------------------------------------------ report

function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const cpuModel = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown'
  const version = (pkg, from = ROOT) => {
    try {
      return JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`, { paths: [from] }), 'utf8')).version
    } catch {
      return 'unknown'
    }
  }
  const wranglerDir = dirname(require.resolve('wrangler/package.json'))
  let nproc = String(cpus().length)
  try {
    nproc = execFileSync('nproc', { encoding: 'utf8' }).trim()
  } catch {
    // keep os.cpus()
  }
  return {
    nproc,
    cpuModel,
    memGb: (Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 2 ** 20).toFixed(1),
    node: process.version,
    workerd: version('workerd', wranglerDir),
    wrangler: version('wrangler'),
    tfjs: version('@tensorflow/tfjs-core'),
    autocannon: version('autocannon'),
    date: new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC',
  }
}

const fmt = (x, digits = 1) => (x === undefined || x === null || Number.isNaN(x) ? '—' : Number(x).toFixed(digits))
const bytes = (n) => (n === undefined ? '—' : n < 2 ** 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 2 ** 20).toFixed(2)} MiB`)
const inWorker = (c) => (c.serverP50 === undefined ? '—' : `${c.serverP50} / ${c.serverP99}`)
const ratio = (a, b) => (a === undefined || b === undefined || !b ? '—' : `${(a / b).toFixed(1)}×`)

const ms = (x, digits = 1) => (x === undefined ? '—' : `${fmt(x, digits)} ms`)
const times = (x) => (x === undefined || !Number.isFinite(x) ? '—' : `${x.toFixed(x >= 10 ? 0 : x >= 1 ? 1 : 2)}×`)

/** Issue 5's targets against this run's figures. */
function targetsMarkdown({ floors, runs, cacheOff, extra, parsing, bundle }) {
  const cellOf = (model, backend, c) => runs.find((r) => r.model === model && r.actual === backend)?.cells.find((x) => x.c === c && !x.skipped)
  const floorOf = (model, backend) => floors.find((f) => f.model === model && f.backend === backend)
  const plumbing = runs.find((r) => r.control)?.control.cells.find((x) => x.c === 1 && !x.skipped)
  const verdict = (ok) => (ok === undefined ? 'not measured' : ok ? '**met**' : '**missed**')
  const rows = []

  // 1. image model: worker ≤ 1.15 × floor.
  {
    const f = floorOf(IMAGE_MODEL, 'wasm')
    const w = cellOf(IMAGE_MODEL, 'wasm', 1)
    const bin = extra?.binary?.cells.find((x) => x.kind === 'binary' && x.c === 1)
    const ok = f && w?.serverP50 !== undefined ? w.serverP50 <= 1.15 * f.p50 : undefined
    rows.push([
      `Warm p50 through the Worker ≤ 1.15× raw in-process predict, image model (\`${IMAGE_MODEL}\`, wasm, c=1)`,
      f && w ? `${w.p50} ms ÷ ${fmt(f.p50, 2)} ms = ${times(w.p50 / f.p50)}` : '—',
      f && w?.serverP50 !== undefined
        ? `${w.serverP50} ms ÷ ${fmt(f.p50, 2)} ms = ${times(w.serverP50 / f.p50)} (JSON, v1 predict)` +
          (bin?.serverP50 !== undefined ? `; binary body (v2): ${bin.serverP50} ms = ${times(bin.serverP50 / f.p50)}` : '')
        : '—',
      `${verdict(ok)} (in-Worker, JSON)`,
      ok === undefined
        ? ''
        : ok
          ? `${fmt(1.15 * f.p50 - w.serverP50)} ms under the 1.15× line (${fmt(1.15 * f.p50)} ms)`
          : `${times(w.serverP50 / f.p50)} against 1.15×: ${fmt(w.serverP50 - 1.15 * f.p50)} ms over the line (${fmt(1.15 * f.p50)} ms)`,
    ])
  }
  // 2. iris: worker ≤ floor + 1 ms.
  {
    const f = floorOf('iris', 'wasm')
    const w = cellOf('iris', 'wasm', 1)
    const ok = f && w?.serverP50 !== undefined ? w.serverP50 <= f.p50 + 1 : undefined
    rows.push([
      'Warm p50 through the Worker ≤ raw + 1 ms, `iris` (wasm, c=1)',
      f && w ? `${w.p50} ms − ${fmt(f.p50, 2)} ms = +${fmt(w.p50 - f.p50)} ms${plumbing ? ` (the plumbing alone, \`GET /v2/health/live\`: ${plumbing.p50} ms)` : ''}` : '—',
      f && w?.serverP50 !== undefined ? `${w.serverP50} ms − ${fmt(f.p50, 2)} ms = +${fmt(w.serverP50 - f.p50, 2)} ms (mean ${fmt(w.serverMean, 2)} ms; whole-ms clock)` : '—',
      `${verdict(ok)} (in-Worker)`,
      ok === undefined ? '' : ok ? `${fmt(f.p50 + 1 - w.serverP50, 2)} ms to spare` : `${fmt(w.serverP50 - f.p50 - 1, 2)} ms over`,
    ])
  }
  // 3. cache: warm ≥ 10× lower p50 than a build per request (digits).
  {
    const warm = cellOf('digits', 'wasm', 1)
    const off = cacheOff?.cells.find((x) => x.model === 'digits' && x.c === 1)
    const inWorker = warm && off && warm.serverP50 > 0 ? off.serverP50 / warm.serverP50 : undefined
    const ok = inWorker === undefined ? undefined : inWorker >= 10
    rows.push([
      'Warm cache ≥ 10× lower p50 than a build per request, `digits` (wasm, c=1)',
      warm && off ? `${off.p50} ms ÷ ${warm.p50} ms = ${times(off.p50 / warm.p50)}` : '—',
      warm && off ? `${off.serverP50} ms ÷ ${warm.serverP50} ms = ${times(inWorker)} (means: ${fmt(off.serverMean)} ÷ ${fmt(warm.serverMean, 2)} ms = ${times(off.serverMean / warm.serverMean)})` : '—',
      `${verdict(ok)} (in-Worker p50)`,
      ok === undefined
        ? ''
        : ok
          ? `${times(inWorker)} against 10×${off.p50 / warm.p50 < 10 ? `; client-side only ${times(off.p50 / warm.p50)}, as both pay the same ~${plumbing?.p50 ?? 5} ms of plumbing` : ''}`
          : `${times(inWorker)} against 10×: short by ${times(10 / inWorker)}`,
    ])
  }
  // 4. wasm ≥ 10× faster than cpu on the image model, inside workerd.
  {
    const w = cellOf(IMAGE_MODEL, 'wasm', 1)
    const k = cellOf(IMAGE_MODEL, 'cpu', 1)
    const inWorker = w && k && w.serverP50 > 0 ? k.serverP50 / w.serverP50 : undefined
    const ok = inWorker === undefined ? undefined : inWorker >= 10
    const fw = floorOf(IMAGE_MODEL, 'wasm')
    const fc = floorOf(IMAGE_MODEL, 'cpu')
    rows.push([
      `wasm ≥ 10× faster than cpu inside workerd, \`${IMAGE_MODEL}\` (c=1)`,
      w && k ? `${k.p50} ms ÷ ${w.p50} ms = ${times(k.p50 / w.p50)}` : '—',
      w && k ? `${k.serverP50} ms ÷ ${w.serverP50} ms = ${times(inWorker)} (in Node: ${fw && fc ? times(fc.p50 / fw.p50) : '—'})` : '—',
      `${verdict(ok)} (in-Worker p50)`,
      ok === undefined ? '' : ok ? `${times(inWorker)} against 10×` : `${times(inWorker)} against 10×: short by ${times(10 / inWorker)} (${((1 - inWorker / 10) * 100).toFixed(0)}%)`,
    ])
  }
  // 5. batching: digits throughput at c=32 ≥ 1.5× unbatched, with p99.
  {
    const at = (model) => extra?.batching.find((x) => x.model === model && x.c === 32)
    const base = at('digits')
    const batched = at('digits-batched')
    const other = at('digits-batched-2ms')
    const gain = base && batched ? batched.rps / base.rps : undefined
    const ok = gain === undefined ? undefined : gain >= 1.5
    rows.push([
      'Batching: throughput at c=32 ≥ 1.5× unbatched, `digits` (max_batch_size 32, delay 0 ms), p99 reported',
      base && batched
        ? `${fmt(batched.rps)} ÷ ${fmt(base.rps)} req/s = ${times(gain)}; p99 ${batched.p99} ms batched vs ${base.p99} ms` +
          (other ? ` (delay 2 ms: ${times(other.rps / base.rps)}, p99 ${other.p99} ms)` : '')
        : '—',
      base && batched ? `p50 / p99 ${inWorker(batched)} ms batched vs ${inWorker(base)} ms` : '—',
      `${verdict(ok)} (client req/s)`,
      ok === undefined ? '' : ok ? `${times(gain)} against 1.5×` : `${times(gain)} against 1.5×: short by ${times(1.5 / gain)} (${fmt(1.5 * base.rps - batched.rps)} req/s)`,
    ])
  }
  // 6. binary: ≥ 3× lower request-parsing time than JSON.
  {
    const gain = parsing ? parsing.json.median / parsing.binary.median : undefined
    const ok = gain === undefined ? undefined : gain >= 3
    const j = extra?.binary?.cells.find((x) => x.kind === 'json' && x.c === 1)
    const b = extra?.binary?.cells.find((x) => x.kind === 'binary' && x.c === 1)
    rows.push([
      `Binary: ≥ 3× lower request-parsing time than JSON, \`${IMAGE_MODEL}\` input (${IMAGE_SIZE}×${IMAGE_SIZE}×3 FP32)`,
      j && b ? `end to end p50 ${j.p50} → ${b.p50} ms (c=1)` : '—',
      `parsing (Worker's functions, in Node): ${parsing ? `${fmt(parsing.json.median, 2)} ÷ ${fmt(parsing.binary.median, 3)} ms = ${times(gain)}` : '—'}` +
        (j && b ? `; whole request in the Worker: p50 ${j.serverP50} → ${b.serverP50} ms, mean ${fmt(j.serverMean)} → ${fmt(b.serverMean)} ms` : ''),
      `${verdict(ok)} (parsing time)`,
      ok === undefined ? '' : ok ? `${times(gain)} against 3×` : `${times(gain)} against 3×: short by ${times(3 / gain)}`,
    ])
  }
  // 7. bundle size.
  {
    const LIMIT_KIB = 3 * 1024
    const ok = bundle ? bundle.gzipKiB <= LIMIT_KIB : undefined
    rows.push([
      'Bundle within the Worker size limit (Free plan: 3 MB compressed; Paid: 10 MB)',
      bundle ? `${fmt(bundle.totalKiB)} KiB, ${fmt(bundle.gzipKiB)} KiB gzipped (\`wrangler deploy --dry-run\`)` : '—',
      '',
      verdict(ok),
      ok === undefined ? '' : `${fmt((100 * bundle.gzipKiB) / LIMIT_KIB, 0)}% of the Free plan's 3 MB`,
    ])
  }
  return [
    '## Targets (issue 5)',
    '',
    '**client** = what autocannon saw through `wrangler dev`, which adds its local plumbing (a proxy `workerd`, then the',
    `static-assets router) that production does not have${plumbing ? ` — \`GET /v2/health/live\`, no model, takes ${plumbing.p50} ms p50 at c=1 here` : ''}.`,
    '**in-Worker** = the Worker\'s own time per request (its access-log line\'s `ms`, whole milliseconds). The',
    '**verdict** column says which figure it uses: the in-Worker one for latency targets (what production would',
    'see, less the network), autocannon\'s req/s for throughput. The floor is tf.js `predictOnBatch` in this Node process.',
    '',
    '| target | client | in-Worker | verdict (on) | by how much |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
  ]
}

/** The baselines' sections: the cache off, batching, binary bodies. */
function baselinesMarkdown({ runs, cacheOff, extra, parsing }) {
  const lines = []
  const push = (...l) => lines.push(...l)
  const cellOf = (model, backend, c) => runs.find((r) => r.model === model && r.actual === backend)?.cells.find((x) => x.c === c && !x.skipped)
  if (cacheOff) {
    push(
      '### Model cache off: a build per request',
      '',
      'A separate `wrangler dev` with `--var MODEL_CACHE:off`: every request fetches the model from the assets,',
      'builds it, warms it up and disposes it afterwards (src/model/models.ts) — the pattern the cache exists to',
      'avoid — against the warm cache\'s cells above (wasm). **load** = the medians of the Worker\'s per-request',
      '`model.loaded` lines.',
      '',
      '| model | conc. | warm p50 / p99 ms | cache off p50 / p99 ms | warm req/s | cache off req/s | in-Worker p50 warm → off | in-Worker mean warm → off | load: fetch / build / warmup ms | off ÷ warm p50 (client) | off ÷ warm p50 (in-Worker) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    )
    for (const off of cacheOff.cells) {
      const warm = cellOf(off.model, cacheOff.actual, off.c)
      push(
        `| ${off.model} | ${off.c} | ${warm ? `${warm.p50} / ${warm.p99}` : '—'} | ${off.p50} / ${off.p99} | ${fmt(warm?.rps)} | ${fmt(off.rps)} | ${warm ? `${warm.serverP50} → ${off.serverP50}` : '—'} | ${warm?.serverMean !== undefined ? `${fmt(warm.serverMean, 2)} → ${fmt(off.serverMean)}` : '—'} | ${off.loads ? `${off.loads.fetchMs} / ${off.loads.buildMs} / ${off.loads.warmupMs}` : '—'} | ${ratio(off.p50, warm?.p50)} | ${ratio(off.serverP50, warm?.serverP50 || undefined)} |` +
          (off.failed ? ` ${off.failed} failed` : ''),
      )
    }
    push('')
  }
  if (extra?.batching?.length) {
    push(
      '### Batching',
      '',
      'One `wrangler dev` (wasm) serving each model twice or three times: as is, and as copies with a `config.json`',
      'that turns batching on (docs/batching.md). Same request bodies (one example, JSON, `POST /v1/models/{m}:predict`);',
      'rows of one model and concurrency are side by side, unbatched first.',
      '',
      '| model | batching (max_batch_size, delay) | conc. | p50 ms | p99 ms | req/s | in-Worker p50 / p99 ms | req/s ÷ unbatched | p99 ÷ unbatched |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    )
    for (const r of extra.batching) {
      const base = extra.batching.find((x) => x.model === r.base && x.c === r.c)
      const cfg = r.batchingConfig ? `${r.batchingConfig.max_batch_size}, ${r.batchingConfig.max_queue_delay_ms} ms` : 'off'
      push(
        `| ${r.model} | ${cfg} | ${r.c} | ${fmt(r.p50, 0)} | ${fmt(r.p99, 0)} | ${fmt(r.rps)} | ${inWorker(r)} | ${r === base ? '1.0×' : ratio(r.rps, base?.rps)} | ${r === base ? '1.0×' : ratio(r.p99, base?.p99)} |` +
          (r.failed ? ` ${r.failed} failed` : ''),
      )
    }
    for (const e of extra.batchingOff ?? []) push('', `\`${e.model}\` stopped batching during the run: ${e.reason}.`)
    push(
      '',
      'In-Worker times of batched rows include the wait in the queue and the merged run. The isolate is',
      'single-threaded and shares 2 cores with the proxy `workerd` and autocannon, so merging saves only the',
      'per-run overhead of the model; it cannot overlap JSON parsing with inference.',
      '',
    )
  }
  const bin = extra?.binary
  if (bin) {
    push(
      '### Binary tensors against JSON',
      '',
      `\`POST /v2/models/${IMAGE_MODEL}/infer\`, one ${IMAGE_SIZE}×${IMAGE_SIZE}×3 FP32 image: JSON with flat \`data\` (numbers with 4 decimals)`,
      'against the binary tensor extension (`Inference-Header-Content-Length`, a JSON header, then the raw',
      `little-endian float32 bytes, \`parameters.binary_data_size\`). The two answers agree within ${bin.agreement.toExponential(1)} (relative).`,
      '',
      '| body | request bytes | conc. | p50 ms | p99 ms | req/s | in-Worker p50 / p99 ms | in-Worker mean ms | p50 ÷ JSON | in-Worker mean ÷ JSON |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    )
    for (const r of bin.cells) {
      const j = bin.cells.find((x) => x.kind === 'json' && x.c === r.c)
      push(
        `| ${r.kind === 'json' ? 'JSON' : 'binary'} | ${r.kind === 'json' ? bin.jsonBytes : bin.binaryBytes} | ${r.c} | ${fmt(r.p50, 0)} | ${fmt(r.p99, 0)} | ${fmt(r.rps)} | ${inWorker(r)} | ${fmt(r.serverMean)} | ${r === j ? '1.0×' : ratio(r.p50, j?.p50)} | ${r === j ? '1.0×' : ratio(r.serverMean, j?.serverMean)} |` +
          (r.failed ? ` ${r.failed} failed` : ''),
      )
    }
    if (parsing) {
      const stage = (s, d = 3) => fmt(s, d)
      push(
        '',
        `**Request parsing** alone, timed in this Node process (V8, as in workerd) on the exact bodies above, with the`,
        'Worker\'s own functions — `parseJson` (src/body.ts), `parseBody(InferRequest)` (src/schemas.ts),',
        '`flatten` / `toTypedArray` (src/tensors.ts), `splitBinary` / `decodeBinary` (src/binary.ts) — bundled by esbuild during',
        `the run; from the body's bytes to the Float32Array that becomes the tensor; median of ${parsing.iterations} runs each.`,
        '',
        '| body | median ms | p90 ms | bytes → JSON.parse | zod validation | values (flatten / split + decode) | → Float32Array (checked) |',
        '|---|---:|---:|---:|---:|---:|---:|',
        `| JSON | ${fmt(parsing.json.median, 3)} | ${fmt(parsing.json.p90, 3)} | ${parsing.json.stages.map((s) => stage(s)).join(' | ')} |`,
        `| binary | ${fmt(parsing.binary.median, 3)} | ${fmt(parsing.binary.p90, 3)} | ${parsing.binary.stages.map((s) => stage(s)).join(' | ')} |`,
        `| JSON ÷ binary | ${times(parsing.json.median / parsing.binary.median)} | | | | | |`,
      )
    }
    push('')
  }
  return lines
}

function resultsMarkdown({ env, floors, runs, imageInfo, totalS, cacheOff, extra, parsing, bundle }) {
  const floorOf = (model, backend) => floors.find((f) => f.model === model && f.backend === backend)
  const runOf = (model, backend) => runs.find((r) => r.model === model && r.backend === backend)
  const lines = []
  const push = (...l) => lines.push(...l)
  push(
    '# warmserve benchmark',
    '',
    `Written by \`npm run bench\` (bench/run.mjs) on ${env.date}, in ${Math.round(totalS)} s. Every number is from one run on this`,
    'machine, over loopback (127.0.0.1), with autocannon in the same Node process as the floor measurements',
    'and sharing the 2 cores with workerd: read ratios, not absolutes.',
    '',
    '| machine | |',
    '|---|---|',
    `| CPUs (\`nproc\`) | ${env.nproc} |`,
    `| CPU model | ${env.cpuModel} |`,
    `| memory | ${env.memGb} GiB |`,
    `| Node (bench, floor) | ${env.node} |`,
    `| workerd | ${env.workerd} (wrangler ${env.wrangler}) |`,
    `| tf.js | ${env.tfjs} (wasm backend: SIMD, no threads, in Node and in workerd) |`,
    `| load generator | autocannon ${env.autocannon}, ${DURATION} s per cell, batch 1, JSON row format |`,
    `| other processes' CPU during the run | ${fmt(env.foreignCpuS)} CPU-s over ${Math.round(totalS)} s (${fmt((100 * env.foreignCpuS) / totalS, 0)}% of one core; per row in the cold-start table) |`,
    '',
    'Models: `iris` (dense, 4 → 3), `digits` (small CNN, 28×28×1 → 10), ' +
      `\`${IMAGE_MODEL}\` (MobileNet-v1-style, width 0.75, 128×128×3 → 10, ${imageInfo.params ? `${(imageInfo.params / 1e6).toFixed(2)} M parameters, ` : ''}` +
      `${fmt(imageInfo.weightMb, 2)} MiB of weights; seeded random weights, built by scripts/build-image-model.mjs).`,
    '',
    ...targetsMarkdown({ floors, runs, cacheOff, extra, parsing, bundle }),
    '## Warm predict latency and throughput',
    '',
    '`POST /v1/models/{m}:predict`, one example per request. **floor** = tf.js `predictOnBatch` + reading the',
    'result, called directly in Node on the same backend and input, one at a time (its req/s is 1 ÷ mean).',
    '**× floor** = the Worker\'s p50 ÷ the floor\'s p50 on the same backend. autocannon reports whole milliseconds.',
    '**in-Worker** = the Worker\'s own time per request (its access-log line\'s `ms`: routing, JSON, validation,',
    'inference, response), so the gap to p50 is `wrangler dev`\'s local plumbing — a proxy `workerd`, then the',
    'static-assets router, then the Worker — which production does not have. The `(no model)` rows measure that',
    'plumbing alone.',
    '',
    '| model | variant | backend | conc. | p50 ms | p99 ms | req/s | in-Worker p50 / p99 ms | p50 × floor | req/s ÷ floor |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|',
  )
  for (const model of MODELS) {
    for (const backend of BACKENDS) {
      const f = floorOf(model, backend)
      if (f) push(`| ${model} | floor (Node, in-process) | ${backend} | 1 | ${fmt(f.p50, 2)} | ${fmt(f.p99, 2)} | ${fmt(f.rps)} | | 1.0× | 1.0× |`)
    }
    for (const backend of BACKENDS) {
      const run = runOf(model, backend)
      if (!run) continue
      const f = floorOf(model, run.actual)
      const note = run.actual !== backend ? ` (asked ${backend})` : ''
      for (const c of run.cells) {
        if (c.skipped) {
          push(`| ${model} | worker | ${run.actual}${note} | ${c.c} | skipped | | | | | |`)
          continue
        }
        push(
          `| ${model} | worker | ${run.actual}${note} | ${c.c} | ${fmt(c.p50, 0)} | ${fmt(c.p99, 0)} | ${fmt(c.rps)} | ${inWorker(c)} | ${ratio(c.p50, f?.p50)} | ${f ? `${(c.rps / f.rps).toFixed(2)}×` : '—'} |` +
            (c.failed ? ` ${c.failed} failed` : ''),
        )
      }
      for (const c of (run.actual === cacheOff?.actual ? cacheOff.cells : []).filter((x) => x.model === model)) {
        push(
          `| ${model} | worker, cache off (build per request) | ${cacheOff.actual} | ${c.c} | ${fmt(c.p50, 0)} | ${fmt(c.p99, 0)} | ${fmt(c.rps)} | ${inWorker(c)} | ${ratio(c.p50, f?.p50)} | ${f ? `${(c.rps / f.rps).toFixed(2)}×` : '—'} |` +
            (c.failed ? ` ${c.failed} failed` : ''),
        )
      }
    }
  }
  const controlRun = runs.find((r) => r.control)
  if (controlRun) {
    for (const c of controlRun.control.cells) {
      if (!c.skipped) push(`| (no model) | worker, \`GET /v2/health/live\` | ${controlRun.actual} | ${c.c} | ${fmt(c.p50, 0)} | ${fmt(c.p99, 0)} | ${fmt(c.rps)} | ${inWorker(c)} | | |`)
    }
  }
  push(
    '',
    'For `iris` and `digits` inference is a fraction of a millisecond, so their rows measure the HTTP path —',
    'compare them with the `(no model)` rows — and differences between their backends are noise.',
    '',
    'The `cache off` rows are the Worker with `--var MODEL_CACHE:off`: a fetch, build and warmup on every request.',
    '',
    ...baselinesMarkdown({ runs, cacheOff, extra, parsing }),
    '### wasm against cpu in the Worker',
    '',
    '| model | conc. | cpu p50 ÷ wasm p50 | in-Worker: cpu p50 ÷ wasm p50 | wasm req/s ÷ cpu req/s |',
    '|---|---:|---:|---:|---:|',
  )
  for (const model of MODELS) {
    const wasm = runOf(model, 'wasm')
    const cpu = runOf(model, 'cpu')
    if (!wasm || !cpu || wasm.actual !== 'wasm' || cpu.actual !== 'cpu') continue
    for (const c of CONCURRENCY) {
      const w = wasm.cells.find((x) => x.c === c && !x.skipped)
      const k = cpu.cells.find((x) => x.c === c && !x.skipped)
      push(`| ${model} | ${c} | ${w && k ? ratio(k.p50, w.p50) : '—'} | ${w && k ? ratio(k.serverP50, w.serverP50) : '—'} | ${w && k ? ratio(w.rps, k.rps) : '—'} |`)
    }
  }
  push(
    '',
    '## Cold start',
    '',
    'A fresh `wrangler dev` per row; the first request is that model\'s predict (no request before it, so it',
    'also pays for the isolate, the module\'s global scope and the backend\'s start). fetch / build / warmup are',
    'the Worker\'s own `model.loaded` log line; **rest** = first predict − (fetch + build + warmup) − warm p50 at',
    'c=1: isolate start, backend initialisation, JSON and HTTP. **other CPU** = what other processes on the',
    'machine used while the row (cold start, warm cells and memory) ran, in % of one core: high means skewed.',
    '',
    '| model | backend | wrangler spawn → ready s | first predict ms | fetch ms | build ms | warmup ms | rest ms | warm p50 ms | first ÷ warm | other CPU % |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  )
  for (const model of MODELS) {
    for (const backend of BACKENDS) {
      const run = runOf(model, backend)
      if (!run) continue
      const l = run.loaded ?? {}
      const warm = run.cells.find((c) => c.c === 1)?.p50
      const rest = l.fetchMs !== undefined ? run.coldMs - l.fetchMs - l.buildMs - l.warmupMs - (warm ?? 0) : undefined
      push(
        `| ${model} | ${run.actual} | ${fmt(run.startupMs / 1000)} | ${fmt(run.coldMs, 0)} | ${fmt(l.fetchMs, 0)} | ${fmt(l.buildMs, 0)} | ${fmt(l.warmupMs, 0)} | ${fmt(rest, 0)} | ${fmt(warm, 0)} | ${ratio(run.coldMs, warm || undefined)} | ${fmt((100 * run.foreignCpuS) / run.wallS, 0)}% |`,
      )
    }
  }
  const control = runs.find((r) => r.control)?.control
  push(
    '',
    '## Memory',
    '',
    '`wrangler dev` runs two `workerd` processes (found under its process tree with `ps`): **worker** runs the',
    'Worker — and the static-assets router in front of it — and **proxy** forwards the public port to it.',
    'RSS is the whole process (runtime, V8, every isolate in it), so the number to hold against the',
    `isolate's ${ISOLATE_LIMIT_MB} MB is the growth: **load Δ** = after the first predict − idle (before any request).`,
    'Each row is a fresh `wrangler dev`.',
    '',
    `| model | backend | weights | idle MB | after load MB | load Δ MB | load Δ ÷ ${ISOLATE_LIMIT_MB} MB | after N requests MB | N | proxy after N MB |`,
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  )
  for (const model of MODELS) {
    for (const backend of BACKENDS) {
      const run = runOf(model, backend)
      if (!run) continue
      const delta = run.afterLoad.worker - run.idle.worker
      push(
        `| ${model} | ${run.actual} | ${bytes(run.loaded?.bytes)} | ${fmt(run.idle.worker, 0)} | ${fmt(run.afterLoad.worker, 0)} | ${fmt(delta, 0)} | ${fmt((100 * delta) / ISOLATE_LIMIT_MB, 0)}% | ${fmt(run.afterRequests.worker, 0)} | ${run.served} | ${fmt(run.afterRequests.proxy, 0)} |`,
      )
    }
  }
  for (const run of runs.filter((r) => r.all !== undefined)) {
    const delta = run.all.worker - run.idle.worker
    push(`| all ${MODELS.length} models, loaded one after another | ${run.actual} | | ${fmt(run.idle.worker, 0)} | ${fmt(run.all.worker, 0)} | ${fmt(delta, 0)} | ${fmt((100 * delta) / ISOLATE_LIMIT_MB, 0)}% | | | |`)
  }
  if (control) {
    push(
      '',
      `Control: ${control.requests} × \`GET /v2/health/live\` (no model, no tf.js) changed the worker process's RSS by`,
      `${fmt(control.workerGrowthMb, 0)} MB and the proxy's by ${fmt(control.proxyGrowthMb, 0)} MB. RSS after N requests holds garbage not yet`,
      "collected and `wrangler dev`'s own per-request growth: a bare Worker behind `[assets] run_worker_first`",
      'grows too (about 40 MB per 1 000 requests in the worker process here, measured apart from this script), so',
      'only **load Δ** speaks for the models.',
    )
  }
  const fallbacks = runs.filter((r) => r.actual !== r.backend)
  if (fallbacks.length > 0) {
    push('', '## Notes', '')
    for (const r of fallbacks) {
      push(`- ${r.model}: asked for \`TF_BACKEND=${r.backend}\`, the Worker ran on \`${r.actual}\`${r.fallback ? ` (fallback: ${r.fallback})` : ' — TF_BACKEND is not wired to configureBackend()'}.`)
    }
  }
  push('', '![warm latency](latency.svg)', '')
  return lines.join('\n')
}

/** Latency p50 (solid) and p99 (dashed) against concurrency, one panel per model, log-scaled y. */
function latencySvg(floors, runs) {
  const panelW = 300
  const panelH = 240
  const margin = { left: 56, right: 14, top: 34, bottom: 44 }
  const width = MODELS.length * panelW + 20
  const height = panelH + 70
  const colors = { wasm: '#1f77b4', cpu: '#d62728' }
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;')
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ]
  MODELS.forEach((model, index) => {
    const x0 = 10 + index * panelW
    const plotW = panelW - margin.left - margin.right
    const plotH = panelH - margin.top - margin.bottom
    const values = []
    for (const run of runs.filter((r) => r.model === model)) for (const c of run.cells) if (!c.skipped) values.push(Math.max(c.p50, 0.5), Math.max(c.p99, 0.5))
    for (const f of floors.filter((f) => f.model === model)) values.push(Math.max(f.p50, 0.05))
    for (const c of runs.find((r) => r.control)?.control.cells ?? []) if (!c.skipped) values.push(Math.max(c.p50, 0.5))
    if (values.length === 0) return
    const lo = 10 ** Math.floor(Math.log10(Math.min(...values)))
    const hi = 10 ** Math.ceil(Math.log10(Math.max(...values)))
    const xs = CONCURRENCY.map((_, i) => x0 + margin.left + (plotW * i) / (CONCURRENCY.length - 1))
    const y = (v) => margin.top + plotH - (plotH * (Math.log10(Math.max(v, lo)) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo))
    parts.push(`<text x="${x0 + margin.left + plotW / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${esc(model)}</text>`)
    parts.push(`<rect x="${x0 + margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`)
    for (let v = lo; v <= hi * 1.0001; v *= 10) {
      parts.push(`<line x1="${x0 + margin.left}" x2="${x0 + margin.left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`)
      parts.push(`<text x="${x0 + margin.left - 4}" y="${y(v) + 4}" text-anchor="end">${v >= 1 ? v : v.toPrecision(1)}</text>`)
    }
    CONCURRENCY.forEach((c, i) => parts.push(`<text x="${xs[i]}" y="${margin.top + plotH + 14}" text-anchor="middle">${c}</text>`))
    parts.push(`<text x="${x0 + margin.left + plotW / 2}" y="${margin.top + plotH + 30}" text-anchor="middle">concurrent connections</text>`)
    parts.push(`<text transform="translate(${x0 + 14} ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">latency ms (log)</text>`)
    for (const f of floors.filter((f) => f.model === model)) {
      parts.push(
        `<line x1="${x0 + margin.left}" x2="${x0 + margin.left + plotW}" y1="${y(f.p50)}" y2="${y(f.p50)}" stroke="${colors[f.backend]}" stroke-dasharray="2 3" opacity="0.8"/>`,
      )
    }
    const control = runs.find((r) => r.control)?.control
    if (control) {
      const points = control.cells.flatMap((c) => (c.skipped ? [] : [[xs[CONCURRENCY.indexOf(c.c)], y(Math.max(c.p50, 0.5))]]))
      parts.push(`<polyline fill="none" stroke="#888" stroke-width="1.5" points="${points.map((p) => p.map((v) => v.toFixed(1)).join(',')).join(' ')}"/>`)
    }
    for (const run of runs.filter((r) => r.model === model)) {
      const color = colors[run.actual] ?? '#333'
      for (const [key, dash] of [['p50', ''], ['p99', ' stroke-dasharray="6 4"']]) {
        const points = run.cells.flatMap((c) => (c.skipped ? [] : [[xs[CONCURRENCY.indexOf(c.c)], y(Math.max(c[key], 0.5))]]))
        if (points.length === 0) continue
        parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${points.map((p) => p.map((v) => v.toFixed(1)).join(',')).join(' ')}"/>`)
        for (const [px, py] of points) parts.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="2.5" fill="${color}"/>`)
      }
    }
  })
  const ly = panelH + 40
  const legend = [
    ['wasm', '', 'worker, wasm: p50'],
    ['wasm', '6 4', 'worker, wasm: p99'],
    ['cpu', '', 'worker, cpu: p50'],
    ['cpu', '6 4', 'worker, cpu: p99'],
    ['wasm', '2 3', 'floor (Node), wasm: p50'],
    ['cpu', '2 3', 'floor (Node), cpu: p50'],
    ['none', '', 'no model (GET /v2/health/live): p50'],
  ]
  colors.none = '#888'
  legend.forEach(([backend, dash, label], i) => {
    const lx = 20 + Math.floor(i / 2) * 215
    const y = ly + (i % 2) * 16
    parts.push(`<line x1="${lx}" x2="${lx + 28}" y1="${y}" y2="${y}" stroke="${colors[backend]}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`)
    parts.push(`<text x="${lx + 34}" y="${y + 4}">${esc(label)}</text>`)
  })
  parts.push('</svg>')
  return `${parts.join('\n')}\n`
}

// ------------------------------------------------------------------ main

/** Parameters and weight MiB of the image model, from its model.json (float32 weights). */
function imageModelInfo() {
  const json = JSON.parse(readFileSync(join(IMAGE_MODEL_DIR, 'model.json'), 'utf8'))
  const params = json.weightsManifest.flatMap((g) => g.weights).reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1), 0)
  return { params, weightMb: (4 * params) / 2 ** 20 }
}

/** `--render`: rewrites RESULTS.md and latency.svg from the last run's bench/.work/results.json, measuring nothing. */
function render() {
  const saved = JSON.parse(readFileSync(join(ROOT, 'bench', '.work', 'results.json'), 'utf8'))
  const data = { imageInfo: existsSync(join(IMAGE_MODEL_DIR, 'model.json')) ? imageModelInfo() : {}, totalS: Number.NaN, ...saved }
  writeFileSync(join(ROOT, 'bench', 'RESULTS.md'), resultsMarkdown(data))
  writeFileSync(join(ROOT, 'bench', 'latency.svg'), latencySvg(data.floors, data.runs))
  log('rewrote bench/RESULTS.md and bench/latency.svg from bench/.work/results.json')
}

async function main() {
  if (flag('render')) return render()
  const began = performance.now()
  log(`models ${MODELS.join(', ')}; backends ${BACKENDS.join(', ')}; ${DURATION} s per cell${QUICK ? ' (quick)' : ''}`)

  const built = await buildImageModel({ quiet: false })
  if (!built.built) log(`image model: using ${IMAGE_MODEL_DIR} (delete it or run \`npm run build:bench-model -- --force\` to rebuild)`)
  const imageInfo = imageModelInfo()

  // The repository the Worker serves: model-assets (without its index) plus the image model.
  const work = mkdtempSync(join(tmpdir(), 'warmserve-bench-'))
  scratch.add(work)
  const assetsDir = join(work, 'assets')
  mkdirSync(assetsDir)
  cpSync(join(ROOT, 'model-assets'), assetsDir, { recursive: true, filter: (src) => !src.endsWith('_index.json') })
  cpSync(dirname(IMAGE_MODEL_DIR), join(assetsDir, IMAGE_MODEL), { recursive: true })
  for (const model of MODELS) if (!existsSync(join(assetsDir, model, '1', 'model.json'))) throw new Error(`no ${model}/1/model.json in ${assetsDir}`)
  log(`assets: ${assetsDir}`)
  const bundle = bundleSize(assetsDir)

  await waitForQuiet(QUICK ? 10 : 180)
  const foreignBefore = foreignTicks()
  const floors = flag('extras-only') ? [] : await nodeFloor(assetsDir, MODELS, BACKENDS)

  const runs = []
  for (const backend of flag('extras-only') ? [] : BACKENDS) {
    for (const [i, model] of MODELS.entries()) {
      const last = i === MODELS.length - 1
      runs.push(await workerRun(assetsDir, model, backend, { loadOthers: last ? MODELS.slice(0, -1) : [], control: i === 0 && backend === BACKENDS[0] }))
    }
  }

  // The baselines: the cache off, batching, binary bodies (and their parsing, timed here).
  let cacheOff
  try {
    cacheOff = await cacheOffRun(assetsDir)
  } catch (error) {
    log(`  ! the cache-off run failed: ${error?.stack ?? error}`)
  }
  let extra
  let parsing
  try {
    extra = await batchingAndBinaryRun(assetsDir)
    if (extra.binary) {
      try {
        parsing = await requestParsing(extra.binary.bodies, extra.binary.inputName)
      } catch (error) {
        log(`  ! timing request parsing failed: ${error?.stack ?? error}`)
      }
      delete extra.binary.bodies
    }
  } catch (error) {
    log(`  ! the batching / binary run failed: ${error?.stack ?? error}`)
  }

  const totalS = (performance.now() - began) / 1000
  const env = { ...machine(), foreignCpuS: foreignCpuSince(foreignBefore) }
  const data = { env, floors, runs, imageInfo, totalS, cacheOff, extra, parsing, bundle }
  writeFileSync(join(ROOT, 'bench', 'RESULTS.md'), resultsMarkdown(data))
  writeFileSync(join(ROOT, 'bench', 'latency.svg'), latencySvg(floors, runs))
  mkdirSync(join(ROOT, 'bench', '.work'), { recursive: true })
  writeFileSync(join(ROOT, 'bench', '.work', 'results.json'), `${JSON.stringify(data, null, 1)}\n`)
  log(`wrote bench/RESULTS.md and bench/latency.svg in ${totalS.toFixed(0)} s`)
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`[bench] failed: ${error?.stack ?? error}`)
    process.exit(1)
  },
)
