/**
 * warmserve against the Worker a user would write by hand (bench/hand-worker.ts; issue 25), both deploy
 * bundles served by workerd through Miniflare (scripts/tools/launch.mjs startBundle) with the same ASSETS
 * binding over the same model repository:
 *   - warm latency, paired request by request (bench/speed.mjs `paired`): iris over TF Serving JSON, a real
 *     128×128 graph model (human-models antispoof) over TF Serving JSON and the v2 binary layout,
 *     and the no-op; with the `Server-Timing` warmserve answered one request of each with;
 *   - cold starts: a new Miniflare (a fresh isolate) per try, the time from the first request to its
 *     answer for iris and the MobileNet-sized image model, with warmserve's stages from its
 *     `model.loaded` log line.
 */
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { buildBundle, ROOT, startBundle } from '../scripts/tools/launch.mjs'
import { IMAGE_MODEL } from '../scripts/dev/build-image-model.mjs'
import { eventsIn, inputFor } from './measure.mjs'
import { log, QUICK, sleep } from './options.mjs'
import { paired } from './speed.mjs'

/** The real image model of the comparison: human-models' anti-spoofing classifier, 128×128×3 in. */
export const HAND_IMAGE = 'antispoof'
const HAND_IMAGE_JSON = join(ROOT, 'node_modules', '@vladmandic', 'human', 'models', 'antispoof.json')
const SIZE = 128
/** Fresh isolates per server and model for the cold starts. */
const COLD_TRIES = QUICK ? 2 : 5

/** Copies the packaged model into the repository `assetsDir` as `antispoof/1` (its weights are never committed). */
export function addHandModel(assetsDir) {
  const target = join(assetsDir, HAND_IMAGE, '1')
  mkdirSync(target, { recursive: true })
  copyFileSync(HAND_IMAGE_JSON, join(target, 'model.json'))
  const json = JSON.parse(readFileSync(HAND_IMAGE_JSON, 'utf8'))
  for (const shard of json.weightsManifest.flatMap((g) => g.paths))
    copyFileSync(join(dirname(HAND_IMAGE_JSON), shard), join(target, shard))
}

/** A deterministic 128×128×3 image in [0, 1), as TF Serving JSON and as the v2 binary layout. */
function handBodies(inputName) {
  let seed = 11
  const flat = new Float32Array(SIZE * SIZE * 3).map(() =>
    ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31).toFixed(4),
  )
  const rows = []
  for (let y = 0; y < SIZE; y++) {
    const row = []
    for (let x = 0; x < SIZE; x++) row.push(Array.from(flat.subarray((y * SIZE + x) * 3, (y * SIZE + x + 1) * 3)))
    rows.push(row)
  }
  const json = Buffer.from(JSON.stringify({ instances: [rows] }))
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        {
          name: inputName,
          shape: [1, SIZE, SIZE, 3],
          datatype: 'FP32',
          parameters: { binary_data_size: flat.byteLength },
        },
      ],
    }),
  )
  const binary = Buffer.concat([header, Buffer.from(flat.buffer)])
  return { json, binary, headerLength: header.length }
}

const post = (url, body, headers = { 'content-type': 'application/json' }) =>
  fetch(url, { method: 'POST', headers, body })

/**
 * CPU time (ms) every thread of this process's child processes has run so far, from Linux's
 * /proc/<pid>/task/<tid>/schedstat (nanoseconds on the CPU): during a cold start the one child is the
 * workerd serving the bundle, with Miniflare's own Workers (ASSETS, R2) beside the bundle's. A shared
 * host's load stretches the wall time of a first answer several times over, but hardly its CPU time.
 * `undefined` where /proc or `ps` is not there.
 */
function workerdCpuMs() {
  let pids
  try {
    pids = execFileSync('ps', ['-o', 'pid=', '--ppid', String(process.pid)], { encoding: 'utf8' })
      .trim()
      .split(/\s+/)
  } catch {
    return undefined
  }
  let ns = 0
  for (const pid of pids.filter(Boolean)) {
    try {
      for (const task of readdirSync(`/proc/${pid}/task`))
        ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0])
    } catch {
      // `ps` itself, gone by now.
    }
  }
  return ns / 1e6
}

/**
 * Cold starts: per try a fresh instance of each bundle, the first request to `model` timed to its last byte.
 * Each server keeps one folder of local state (Miniflare's R2 bucket and Cache API) across its tries: a new
 * workerd per try is a fresh isolate, and the bucket exists before it starts, as a deployed one does. (In a new
 * folder, Miniflare would create the bucket's database during the first read of it, ~10 ms of CPU on the
 * first answer that a deployed Worker never pays.) The folder is made, and the bucket created, before the tries.
 */
async function coldStarts(assetsDir, bundles, models) {
  const tries = []
  const state = {}
  for (const [server, bundle] of Object.entries(bundles)) {
    state[server] = mkdtempSync(join(tmpdir(), `warmserve-cold-${server}-`))
    const instance = await startBundle({ bundle, assetsDir, persistDir: state[server], ready: 'live' })
    try {
      // warmserve's readiness reads the R2 pointer: Miniflare creates the (empty) bucket's storage.
      await (await fetch(`${instance.url}/v2/health/ready`)).arrayBuffer()
    } finally {
      await instance.stop()
    }
  }
  try {
    await coldTries(assetsDir, bundles, models, state, tries)
  } finally {
    for (const dir of Object.values(state)) rmSync(dir, { recursive: true, force: true })
  }
  return tries
}

async function coldTries(assetsDir, bundles, models, state, tries) {
  for (let i = 0; i < COLD_TRIES; i++) {
    for (const model of models) {
      for (const [server, bundle] of Object.entries(bundles)) {
        const instance = await startBundle({
          bundle,
          assetsDir,
          vars: { TF_BACKEND: 'wasm' },
          ready: 'listening',
          persistDir: state[server],
        })
        try {
          const cpuBefore = workerdCpuMs()
          const started = performance.now()
          const res = await post(`${instance.url}/v1/models/${model}:predict`, inputFor(model).body)
          await res.arrayBuffer()
          const ms = performance.now() - started
          const cpuAfter = workerdCpuMs()
          const cpuMs = cpuBefore === undefined || cpuAfter === undefined ? undefined : cpuAfter - cpuBefore
          if (res.status !== 200) throw new Error(`${server} answered its first ${model} predict with ${res.status}`)
          // A second request: the warm answer on the same isolate.
          const again = performance.now()
          await (await post(`${instance.url}/v1/models/${model}:predict`, inputFor(model).body)).arrayBuffer()
          const warmMs = performance.now() - again
          let loaded
          if (server === 'ws') {
            const deadline = Date.now() + 5_000
            while (
              !(loaded = eventsIn(instance.logs()).find((e) => e.event === 'model.loaded')) &&
              Date.now() < deadline
            )
              await sleep(50)
          }
          tries.push({
            try: i,
            server,
            model,
            ms,
            cpuMs,
            warmMs,
            startupMs: instance.startupMs,
            timing: res.headers.get('server-timing'),
            loaded,
          })
          log(
            `cold   ${server.padEnd(4)} ${model.padEnd(14)} first answer ${ms.toFixed(1)} ms (${cpuMs?.toFixed(1)} ms of workerd's CPU), then ${warmMs.toFixed(1)} ms${loaded ? ` (load ${loaded.ms}: fetch ${loaded.fetchMs} / build ${loaded.buildMs} / warmup ${loaded.warmupMs} = batch-1 run ${loaded.warmup1Ms} + batch-2 run ${loaded.warmup2Ms} ms)` : ''}`,
          )
        } finally {
          await instance.stop()
        }
      }
    }
  }
}

/** The hand-written comparison: warm latency paired, warmserve's Server-Timing, then cold starts. */
export async function handRun(assetsDir) {
  const load = [loadavg()[0]]
  const [wsBundle, handBundle] = [
    await buildBundle({ assetsDir }),
    await buildBundle({ config: 'bench/hand-worker.toml' }),
  ]
  const ws = await startBundle({ bundle: wsBundle, assetsDir, vars: { TF_BACKEND: 'wasm' }, ready: 'live' })
  const hand = await startBundle({ bundle: handBundle, assetsDir, ready: 'listening' })
  let latency
  const timings = {}
  let agreement
  try {
    const meta = await (await fetch(`${ws.url}/v2/models/${HAND_IMAGE}`)).json()
    const bodies = handBodies(meta.inputs[0].name)
    const binaryHeaders = {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(bodies.headerLength),
    }
    const json = { 'content-type': 'application/json' }
    const requests = {
      iris: { path: '/v1/models/iris:predict', body: Buffer.from(inputFor('iris').body), headers: json },
      'image-json': { path: `/v1/models/${HAND_IMAGE}:predict`, body: bodies.json, headers: json },
      'image-binary': { path: `/v2/models/${HAND_IMAGE}/infer`, body: bodies.binary, headers: binaryHeaders },
      noop: { path: '/v2/health/live', method: 'GET', headers: {} },
    }
    const targets = []
    for (const [prefix, server] of [
      ['hand', hand],
      ['ws', ws],
    ]) {
      for (const [key, r] of Object.entries(requests))
        targets.push({
          key: `${prefix}:${key}`,
          url: `${server.url}${r.path}`,
          method: r.method ?? 'POST',
          headers: r.headers,
          body: r.body,
        })
    }
    // Both answer the same, and warmserve says where its time goes (after a first, loading request).
    const answers = {}
    for (const t of targets) {
      for (let i = 0; i < 3; i++) {
        const res = await fetch(t.url, { method: t.method, headers: t.headers, body: t.body })
        const text = await res.text()
        if (res.status !== 200) throw new Error(`${t.key} answered ${res.status}: ${text.slice(0, 300)}`)
        if (i === 2 && t.key.startsWith('ws:')) timings[t.key.slice(3)] = res.headers.get('server-timing')
        if (i === 2 && /image-(json|binary)/.test(t.key)) {
          const v = JSON.parse(text)
          answers[t.key] = (v.predictions ?? v.outputs[0].data).flat(Infinity)
        }
      }
    }
    const ref = answers['hand:image-json']
    agreement = Math.max(...Object.values(answers).flatMap((a) => a.map((v, i) => Math.abs(v - ref[i]))))
    log(
      `hand   warmserve and the hand-written Worker agree on ${HAND_IMAGE} within ${agreement.toExponential(1)} (absolute)`,
    )
    latency = await paired(Object.keys(requests).map((key) => targets.filter((t) => t.key.endsWith(`:${key}`))))
    for (const [key, s] of Object.entries(latency))
      log(`hand   ${key.padEnd(20)} p50 ${s.p50.toFixed(2)} ms  p90 ${s.p90.toFixed(2)} ms  (${s.n} sequential)`)
  } finally {
    await hand.stop()
    await ws.stop()
  }
  const cold = await coldStarts(assetsDir, { hand: handBundle, ws: wsBundle }, ['iris', IMAGE_MODEL])
  load.push(loadavg()[0])
  return { latency, timings, agreement, cold, coldTries: COLD_TRIES, image: HAND_IMAGE, load }
}

const median = (values) => {
  const s = values.filter((v) => typeof v === 'number').sort((a, b) => a - b)
  return s.length === 0 ? undefined : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const f2 = (v) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(2))
const f0 = (v) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(0))

/** The issue 25 section of RESULTS.md: the request table, where warmserve's time goes, the cold starts. */
export function handMarkdown(hand) {
  if (!hand?.latency) return []
  const l = hand.latency
  const rows = [
    ['iris, TF Serving JSON', 'iris', 1.1],
    [`${hand.image} (128×128×3 graph model, human-models), TF Serving JSON`, 'image-json', 0.8],
    [`${hand.image}, v2 binary`, 'image-binary', 1.05],
    ['no-op (`GET /v2/health/live`)', 'noop', 1.05],
  ]
  const out = [
    '## Against the Worker a user would write by hand (issue 25)',
    '',
    'bench/hand-worker.ts is that Worker: each model loaded from the ASSETS binding on first use and kept at module scope,',
    "tf.js on warmserve's wasm SIMD backend, `JSON.parse` + `tf.tensor` in and `JSON.stringify` out, the v2 binary body read",
    'through a `Float32Array`; no router, validation or metrics. Both deploy bundles are served by workerd through Miniflare with',
    `the same ASSETS binding, paired (${QUICK ? 'quick: ' : ''}sequential requests, each to both servers in random order, p50). Pairing request by request puts`,
    'whatever else runs on the host on both servers alike.' +
      (hand.load
        ? ` Load average (1 min) at the start and the end of the run: ${hand.load.map((v) => v.toFixed(1)).join(' and ')}.`
        : ''),
    '',
    '| request | hand-written Worker | warmserve | ratio | target | |',
    '|---|---:|---:|---:|---:|---|',
  ]
  for (const [label, key, target] of rows) {
    const a = l[`hand:${key}`]?.p50
    const b = l[`ws:${key}`]?.p50
    const r = b / a
    out.push(
      `| ${label} | ${f2(a)} ms | ${f2(b)} ms | ${f2(r)}× | ≤ ${target.toFixed(2)}× | ${r <= target ? 'met' : `**missed** by ${f2(b - target * a)} ms`} |`,
    )
  }
  out.push(
    '',
    `Both answer the image model within ${hand.agreement?.toExponential(1)} of each other (absolute, JSON and binary).`,
    '',
    "Where warmserve's extra time goes: its `Server-Timing` on one warm request of each kind (whole milliseconds, the isolate's clock,",
    'which only advances on I/O, so sub-millisecond work reads 0), beside the extra p50:',
    '',
    '| request | warmserve − hand-written (p50) | warmserve `Server-Timing` |',
    '|---|---:|---|',
  )
  for (const [label, key] of rows)
    out.push(
      `| ${label} | ${f2(l[`ws:${key}`]?.p50 - l[`hand:${key}`]?.p50)} ms | \`${hand.timings?.[key] ?? '(none)'}\` |`,
    )

  const extra = (key) => l[`ws:${key}`]?.p50 - l[`hand:${key}`]?.p50
  /** "0.19 ms more than" or "0.25 ms less than". */
  const moreOrLess = (ms) => `${f2(Math.abs(ms))} ms ${ms >= 0 ? 'more' : 'less'} than`
  const busy = (hand.load?.[0] ?? 0) > 3
  // The JSON target: what warmserve's reading may cost beyond its binary request, for 0.80× the hand-written JSON one.
  const jsonRoom = 0.8 * l['hand:image-json']?.p50 - l['ws:image-binary']?.p50
  out.push(
    '',
    `Reading: iris's answer takes warmserve ${moreOrLess(extra('iris'))} the hand-written Worker's; the no-op ${moreOrLess(extra('noop'))} it (what every warmserve request passes`,
    'through: router and middleware; the access-log line only with `ACCESS_LOG = "all"`, and by default only for 4xx/5xx), so the rest is the predict route (body reading with its deadline, validation,',
    'traffic control, the answer); docs/hand-written-floor.md#the-request-path breaks both down, measured inside workerd. The',
    `image model's JSON request takes ${moreOrLess(extra('image-json'))} \`JSON.parse\` + \`tf.tensor\`, where the 0.80× target needs warmserve's`,
    `own reader to save ${f2(l['hand:image-json']?.p50 * 0.2)} ms; the binary request is ${f2(l['ws:image-binary']?.p50 / l['hand:image-binary']?.p50)}× the hand-written one.` +
      (busy
        ? " Under this run's load every CPU millisecond reads as several on the wall clock, so the absolute figures are inflated; the ratios are the comparison."
        : ''),
    '',
    'Where a target is missed, the measured cause and what would close it:',
    '',
    "- **iris** (the predict route's own work, a few hundred µs in all): `readJson`'s guarded read (the `BODY_READ_TIMEOUT_MS`",
    '  deadline and the size checks), traffic control (slot, lease, the request-memory reservation), the signature checks and',
    "  the answer's JSON, each tens of µs (docs/hand-written-floor.md). Each is a safety check; what would close the rest is making",
    '  them cheaper still: the lease taken without a promise when the model is resident, one promise for the guarded read.',
    `- **the image model as JSON**: for 0.80× the reading may cost ${f2(jsonRoom)} ms beyond warmserve's binary request. The body is`,
    "  979 555 bytes of 17-digit float32s (5× its binary form); in plain workerd warmserve's reader reads it in 0.8–0.9× the time of",
    '  `JSON.parse` + flattening (6.7–8.3 ms against 7.4–9.1 ms at a load average of 7; ~220 MB/s). What would close it: a reader',
    '  several times faster (SIMD in wasm, ~1 GB/s), or clients sending the 9 digits a float32 needs; the binary form meets its target.',
    "- **cold iris**: warmserve's first answer still holds the R2 pointer's first read (about 13 ms of CPU under Miniflare, where R2",
    '  runs in the same workerd thread; deployed, R2 is remote and the model loads while it is read) and the warmup: the model run',
    '  once to measure it, then again to answer. What would close it: when the index has measured the version, take the batch-1',
    "  measurement from the first request's own run (docs/hand-written-floor.md).",
  )
  const models = [...new Set(hand.cold.map((t) => t.model))]
  out.push(
    '',
    `### Cold starts (${hand.coldTries} fresh isolates per server and model, medians)`,
    '',
    'Each try starts a new Miniflare (a new workerd, so a new isolate) and times the first request from sending to the last byte of',
    "its answer: wasm instantiation, the model's fetch from ASSETS, build, and for warmserve its warmup and memory profiling (and the R2",
    "pointer's first read; the bucket's local storage exists before the tries, as a deployed bucket does). Stages",
    'are warmserve\'s `model.loaded` log line (`ms` the whole load; "rest" is the first answer less the load: backend instantiation, routing, the request itself).',
    '',
    '| model | hand-written first answer | warmserve first answer | ratio (per try) (target ≤ 1.20× both) | warmserve load: fetch / build / warmup (batch-1 + batch-2 profiled runs), ms | load total | rest | warm answer hand / warmserve |',
    '|---|---:|---:|---:|---|---:|---:|---|',
  )
  for (const model of models) {
    const of = (server) => hand.cold.filter((t) => t.server === server && t.model === model)
    const h = of('hand')
    const w = of('ws')
    const hm = median(h.map((t) => t.ms))
    const wm = median(w.map((t) => t.ms))
    const load = median(w.map((t) => t.loaded?.ms))
    const r = wm / hm
    // Met only when the per-try ratio agrees: on a loaded host one slow try can move either median alone.
    const perTry = median(w.map((t) => t.ms / h.find((x) => x.try === t.try)?.ms))
    out.push(
      `| ${model} | ${f0(hm)} ms | ${f0(wm)} ms | ${f2(r)}× (${f2(perTry)}×) ${Math.max(r, perTry) <= 1.2 ? 'met' : '**missed**'} | ` +
        `${f0(median(w.map((t) => t.loaded?.fetchMs)))} / ${f0(median(w.map((t) => t.loaded?.buildMs)))} / ${f0(median(w.map((t) => t.loaded?.warmupMs)))} (${f0(median(w.map((t) => t.loaded?.warmup1Ms)))} + ${f0(median(w.map((t) => t.loaded?.warmup2Ms)))}) | ${f0(load)} ms | ${f0(wm - load)} ms | ` +
        `${f2(median(h.map((t) => t.warmMs)))} / ${f2(median(w.map((t) => t.warmMs)))} ms |`,
    )
  }
  for (const model of models) {
    const pairs = hand.cold
      .filter((t) => t.server === 'ws' && t.model === model)
      .map((w) => w.ms / hand.cold.find((h) => h.server === 'hand' && h.model === model && h.try === w.try).ms)
    out.push(
      '',
      `${model}: median of the per-try ratios (each try's two first answers started back to back, so under the same load): ${f2(median(pairs))}×.`,
    )
  }
  if (hand.cold.some((t) => t.cpuMs !== undefined)) {
    out.push(
      '',
      "The same first answers in CPU time: what every thread of the instance's workerd ran from the request to its answer (the",
      "bundle's Worker and Miniflare's own ASSETS and R2 Workers; Linux's per-thread `schedstat`), which the host's load stretches",
      'far less than wall time:',
      '',
      '| model | hand-written, CPU ms | warmserve, CPU ms | ratio | median of the per-try ratios |',
      '|---|---:|---:|---:|---:|',
    )
    for (const model of models) {
      const cpu = (server) => hand.cold.filter((t) => t.server === server && t.model === model)
      const h = median(cpu('hand').map((t) => t.cpuMs))
      const w = median(cpu('ws').map((t) => t.cpuMs))
      const perTry = cpu('ws').map((t) => t.cpuMs / cpu('hand').find((x) => x.try === t.try)?.cpuMs)
      out.push(`| ${model} | ${f0(h)} | ${f0(w)} | ${f2(w / h)}× | ${f2(median(perTry))}× |`)
    }
  }
  const image = hand.cold.filter((t) => t.server === 'ws' && t.loaded?.warmup2Ms !== undefined && t.model !== 'iris')
  if (image.length > 0) {
    const share = median(image.map((t) => t.loaded.warmup2Ms / t.ms))
    out.push(
      '',
      `The batch-2 profiling run is ${f0(100 * share)}% of the image model's first answer (median over tries): the index's measured memory did not`,
      'match the files fetched (its digest), so the version was profiled in the isolate (docs/hand-written-floor.md).',
    )
  }
  out.push('', 'Every try: ' + hand.cold.map((t) => `${t.server}/${t.model} ${f0(t.ms)}`).join(', ') + ' ms.', '')
  return out
}

/** Markers around the section in RESULTS.md, so `--hand-only` can replace it in place. */
export const HAND_BEGIN = '<!-- hand-written Worker (bench/hand.mjs) -->'
export const HAND_END = '<!-- end hand-written Worker -->'
