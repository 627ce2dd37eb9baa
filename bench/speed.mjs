/**
 * The request path against its anchors (issue 13), on the deploy bundle served by workerd through
 * Miniflare (scripts/tools/launch.mjs startBundle: no wrangler dev proxy), in one interleaved run:
 *   - warmserve: the no-op request (`GET /v2/health/live`), iris, the image model over TF Serving
 *     JSON and over the Open Inference Protocol's JSON and binary bodies;
 *   - the anchor (bench/anchor.mjs): a hand-written Node `http` + `JSON.parse` + tf.js wasm server
 *     with the same models and bodies, and its no-op;
 *   - with `--before REF`, the same warmserve requests on the bundle of git REF (e.g. main), for
 *     the throughput target ("not lower than before");
 *   - the floor: tf.js `predictOnBatch` + reading the result in this process (wasm), in the same
 *     round-robin, so that it sees the same load as the servers;
 *   - a Worker with no warmserve code (bench/workerd-floor.mjs) behind the same router: a no-op, the
 *     same bodies moved, one inference per request, and tf.js's hot loop inside workerd.
 * Sequential latency is timed per request here with Node's `http` (keep-alive, sub-millisecond),
 * the targets round-robin in short slices so that load from elsewhere falls on all of them alike;
 * throughput at 8 connections is autocannon, alternating the same way.
 */
import { execFileSync, spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ROOT, startBundle } from '../scripts/tools/launch.mjs'
import { IMAGE_MODEL } from '../scripts/dev/build-image-model.mjs'
import { artifactsFrom, cell, imageBodies, inputFor } from './measure.mjs'
import { DURATION, log, QUICK } from './options.mjs'
import { startWorkerdFloor } from './workerd-floor.mjs'

/** Rounds of the round-robin, and each target's slice of a round. */
const ROUNDS = QUICK ? 3 : 12
const SLICE_MS = QUICK ? 200 : 500

/** Starts bench/anchor.mjs serving `models` from `assetsDir`; resolves once it listens. */
async function startAnchor(assetsDir, models) {
  const child = spawn(process.execPath, [join(ROOT, 'bench', 'anchor.mjs'), assetsDir, models.join(',')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the anchor did not listen within 120 s:\n${output}`)), 120_000)
    child.stdout.on('data', (chunk) => {
      output += chunk
      const m = /listening (\d+)/.exec(output)
      if (m) {
        clearTimeout(timer)
        resolve(Number(m[1]))
      }
    })
    child.stderr.on('data', (chunk) => (output += chunk))
    child.once('exit', (code) => reject(new Error(`the anchor exited (${code}):\n${output}`)))
  })
  return { url: `http://127.0.0.1:${port}`, stop: () => child.kill('SIGTERM') }
}

/** The bundle of git `ref`, built from a copy of that tree (with this checkout's node_modules). */
async function startBefore(ref, assetsDir) {
  const tree = mkdtempSync(join(tmpdir(), 'warmserve-before-'))
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${ref}" | tar -x -C "${tree}"`])
  symlinkSync(join(ROOT, 'node_modules'), join(tree, 'node_modules'))
  const launch = await import(pathToFileURL(join(tree, 'scripts', 'tools', 'launch.mjs')).href)
  const server = await launch.startBundle({ assetsDir, vars: { TF_BACKEND: 'wasm' }, ready: 'live' })
  const stop = server.stop
  return Object.assign(server, { stop: async () => (await stop(), rmSync(tree, { recursive: true, force: true })) })
}

const require = createRequire(import.meta.url)

/** The floor as round-robin targets: each model's predict in this process, on tf.js's wasm backend. */
async function floorTargets(assetsDir, models) {
  const tf = require('@tensorflow/tfjs-core')
  const tfl = require('@tensorflow/tfjs-layers')
  require('@tensorflow/tfjs-backend-wasm')
  if (!(await tf.setBackend('wasm'))) throw new Error('tf.js wasm backend failed to start in Node')
  await tf.ready()
  const built = []
  for (const name of models) {
    const model = await tfl.loadLayersModel(tf.io.fromMemory(artifactsFrom(join(assetsDir, name, '1'))))
    const { flat, shape } = inputFor(name)
    const x = tf.tensor([flat], [1, ...shape], 'float32')
    built.push({ model, x })
    const key = `floor:${name === IMAGE_MODEL ? 'image' : name}`
    const run = async () => {
      const started = performance.now()
      const y = model.predictOnBatch(x)
      await y.data()
      y.dispose()
      return { ms: performance.now() - started, status: 200 }
    }
    built.at(-1).target = { key, run }
  }
  return {
    targets: built.map((b) => b.target),
    dispose: () => built.forEach(({ model, x }) => (x.dispose(), model.dispose())),
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })

/** One request, timed from sending to the last byte of the answer. */
function timed({ url, method, headers, body, run }) {
  if (run) return run()
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const req = http.request(
      url,
      { method, headers: { ...headers, 'content-length': body ? body.length : 0 }, agent },
      (res) => {
        res.on('data', () => {})
        res.on('end', () => resolve({ ms: performance.now() - started, status: res.statusCode }))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

const summary = (times) => {
  const sorted = [...times].sort((a, b) => a - b)
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
  return {
    n: sorted.length,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
  }
}

/** Sequential requests to each target in turn, SLICE_MS each, ROUNDS times: each target's latencies. */
export async function interleaved(targets) {
  const times = Object.fromEntries(targets.map((t) => [t.key, []]))
  for (const t of targets) for (let i = 0; i < 5; i++) await timed(t) // connections open, code warm
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of targets) {
      const until = performance.now() + SLICE_MS
      do {
        const r = await timed(t)
        if (r.status !== 200) throw new Error(`${t.key} answered ${r.status}`)
        times[t.key].push(r.ms)
      } while (performance.now() < until)
    }
  }
  return Object.fromEntries(targets.map((t) => [t.key, summary(times[t.key])]))
}

/**
 * The same request to two servers, request by request: each time one to each of a pair, in random
 * order, so that both meet the same moment's load (the shared host's load moves faster than a
 * slice); the pairs take turns in slices of twice SLICE_MS, ROUNDS times. Each target's latencies.
 */
export async function paired(pairs) {
  const times = Object.fromEntries(pairs.flat().map((t) => [t.key, []]))
  for (const t of pairs.flat()) for (let i = 0; i < 5; i++) await timed(t) // connections open, code warm
  for (let round = 0; round < ROUNDS; round++) {
    for (const pair of pairs) {
      const until = performance.now() + 2 * SLICE_MS
      do {
        for (const t of Math.random() < 0.5 ? pair : [pair[1], pair[0]]) {
          const r = await timed(t)
          if (r.status !== 200) throw new Error(`${t.key} answered ${r.status}`)
          times[t.key].push(r.ms)
        }
      } while (performance.now() < until)
    }
  }
  return Object.fromEntries(pairs.flat().map((t) => [t.key, summary(times[t.key])]))
}

/** autocannon at 8 connections on each target, in two alternating halves of DURATION: req/s and p50. */
async function throughput(targets) {
  const sums = Object.fromEntries(targets.map((t) => [t.key, { requests: 0, seconds: 0, failed: 0, p50s: [] }]))
  const half = Math.max(1, Math.round(DURATION / 2))
  for (let round = 0; round < 2; round++) {
    for (const t of targets) {
      const r = await cell(t.url, t.body, 8, half, { method: t.method, headers: t.headers, body: t.body })
      const s = sums[t.key]
      s.requests += r.requests
      s.failed += r.failed
      s.seconds += half
      s.p50s.push(r.p50)
    }
  }
  return Object.fromEntries(
    Object.entries(sums).map(([k, s]) => [
      k,
      { rps: s.requests / s.seconds, failed: s.failed, p50: Math.max(...s.p50s) },
    ]),
  )
}

/**
 * The issue 13 run: warmserve's bundle, the anchor and (with `before`) the bundle of another git ref,
 * interleaved. Returns the latencies, the throughputs and what each body was.
 */
export async function speedRun(assetsDir, { before } = {}) {
  const models = ['iris', IMAGE_MODEL]
  const ws = await startBundle({ assetsDir, vars: { TF_BACKEND: 'wasm' }, ready: 'live' })
  const servers = [ws]
  try {
    const anchor = await startAnchor(assetsDir, models)
    servers.push(anchor)
    const old = before ? await startBefore(before, assetsDir) : undefined
    if (old) servers.push(old)
    const fw = await startWorkerdFloor(assetsDir, { iris: 'iris', [IMAGE_MODEL]: 'image' })
    servers.push(fw)
    log(`speed  warmserve bundle ${ws.url}, anchor ${anchor.url}${old ? `, ${before} bundle ${old.url}` : ''}`)

    const json = { 'content-type': 'application/json' }
    const meta = await (await fetch(`${ws.url}/v2/models/${IMAGE_MODEL}`)).json()
    const bodies = imageBodies(meta.inputs[0].name)
    const imageJson = Buffer.from(inputFor(IMAGE_MODEL).body)
    const irisJson = Buffer.from(inputFor('iris').body)
    const binaryHeaders = {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(bodies.headerLength),
    }
    const on = (server, key, path, body, headers = json) => ({
      key,
      url: `${server.url}${path}`,
      method: body ? 'POST' : 'GET',
      headers,
      body,
    })
    const warmserveTargets = (server, prefix) => [
      on(server, `${prefix}noop`, '/v2/health/live'),
      on(server, `${prefix}iris`, '/v1/models/iris:predict', irisJson),
      on(server, `${prefix}image-json`, `/v1/models/${IMAGE_MODEL}:predict`, imageJson),
      on(server, `${prefix}image-v2-json`, `/v2/models/${IMAGE_MODEL}/infer`, bodies.json),
      on(server, `${prefix}image-v2-binary`, `/v2/models/${IMAGE_MODEL}/infer`, bodies.binary, binaryHeaders),
    ]
    const targets = [
      ...warmserveTargets(ws, 'ws:'),
      on(anchor, 'anchor:noop', '/v2/health/live'),
      on(anchor, 'anchor:iris', '/v1/models/iris:predict', irisJson),
      on(anchor, 'anchor:image-json', `/v1/models/${IMAGE_MODEL}:predict`, imageJson),
      ...(old ? warmserveTargets(old, 'before:') : []),
      // The same requests to a Worker with no warmserve code (bench/workerd-floor.mjs): what stands in the way.
      on(fw, 'workerd:noop', '/noop'),
      on(fw, 'workerd:sink-iris', '/sink', irisJson),
      on(fw, 'workerd:sink-binary', '/sink', bodies.binary, binaryHeaders),
      on(fw, 'workerd:iris', '/run/iris?n=1'),
      on(fw, 'workerd:image', `/run/${IMAGE_MODEL}?n=1`),
    ]
    // Every server answers the same predictions for the same body (the anchor through its own tf.js).
    const first = async (t) =>
      JSON.parse(
        (await (await fetch(t.url, { method: t.method, headers: t.headers, body: t.body })).text()).split('\u0000')[0],
      )
    const a = await first(targets.find((t) => t.key === 'ws:image-json'))
    const b = await first(targets.find((t) => t.key === 'anchor:image-json'))
    const flatA = a.predictions.flat(Infinity)
    const flatB = b.predictions.flat(Infinity)
    const agreement = Math.max(...flatA.map((v, i) => Math.abs(v - flatB[i]) / Math.max(1e-6, Math.abs(flatB[i]))))
    log(`speed  warmserve and the anchor agree on ${IMAGE_MODEL} within ${agreement.toExponential(1)} (relative)`)

    const floor = await floorTargets(assetsDir, models)
    let latency
    try {
      latency = await interleaved([...targets, ...floor.targets, ...fw.hotTargets])
    } finally {
      floor.dispose()
    }
    for (const [key, s] of Object.entries(latency)) {
      log(
        `speed  ${key.padEnd(24)} p50 ${s.p50.toFixed(2)} ms  p90 ${s.p90.toFixed(2)} ms  mean ${s.mean.toFixed(2)} ms  (${s.n} sequential)`,
      )
    }
    const rate = await throughput(targets.filter((t) => /^(ws|anchor|before):(image-json|iris)$/.test(t.key)))
    for (const [key, r] of Object.entries(rate))
      log(`speed  ${key.padEnd(24)} c=8 ${r.rps.toFixed(1)} req/s${r.failed ? ` (${r.failed} failed)` : ''}`)
    return {
      latency,
      throughput: rate,
      before,
      agreement,
      rounds: ROUNDS,
      sliceMs: SLICE_MS,
      bodies: { imageJsonBytes: imageJson.length, v2JsonBytes: bodies.json.length, binaryBytes: bodies.binary.length },
    }
  } finally {
    for (const s of servers.reverse()) await s.stop()
  }
}
