#!/usr/bin/env node
/**
 * `npm run bench`: what serving a model from the Worker costs, measured over loopback against a
 * real `wrangler dev`, next to the floor — the same tf.js predict run directly in this Node process.
 *
 * For each model (iris, digits, and the MobileNet-style image model built by
 * scripts/dev/build-image-model.mjs) and each backend (`wasm`, `cpu`), on a fresh `wrangler dev`:
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
 *     connections, and a 640×480 JPEG photo to the same model's `:classify` (bench/images.mjs), and the request parsing of both bodies timed here with the Worker's own
 *     functions (bundled by esbuild into bench/.work/worker-parsing.mjs);
 *   - the bundle's size from `wrangler deploy --dry-run`.
 * And the request path against its anchors (bench/speed.mjs): the deploy bundle served through Miniflare
 * (no wrangler dev proxy), interleaved with a hand-written Node + tf.js wasm server (bench/anchor.mjs)
 * on the same models and bodies, the no-op request, and with `--before REF` the bundle of git REF.
 * RESULTS.md opens with the speed targets, measured, met or missed and by how much.
 * Writes RESULTS.md and latency.svg to bench/out/ (untracked); with --update-report, to bench/ (the
 * committed report the README quotes). Binds 127.0.0.1 only; every wait is bounded;
 * wrangler's process group is killed at the end, on error and on Ctrl-C.
 *
 * This file decides what runs; scripts/tools/launch.mjs starts the servers, bench/measure.mjs measures,
 * bench/report.mjs writes the report, bench/options.mjs reads the command line.
 *
 * Usage: npm run bench [-- --quick] [-- --duration SECONDS] [-- --models iris,digits] [-- --backends wasm]
 *        npm run bench -- --update-report   (a full run that rewrites the committed bench/RESULTS.md)
 *        npm run bench -- --render   (rewrites the report from the last run's bench/.work/results.json)
 *        --quick: 2 s cells, 100 memory requests: a check that the bench runs, not figures to quote
 *        npm run bench -- --extras-only   (only the baselines: no floor, no per-model runs; for checking)
 *        npm run bench -- --speed-only   (only the floor and the issue 13 run against the anchor)
 *        npm run bench -- --hand-only   (only the hand-written Worker run, issue 25: its section of RESULTS.md is replaced in place;
 *                                         with --render, from the last such run's bench/.work/hand.json)
 *        npm run bench -- --phone-only   (only the phone-photo run, bench/phone.mjs: its section of RESULTS.md is replaced in place;
 *                                          with --render, from the last such run's bench/.work/phone.json)
 *        npm run bench -- --before main   (the issue 13 run also serves main's bundle)
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import autocannon from 'autocannon'
import { ROOT, startWranglerDev } from '../scripts/tools/launch.mjs'
import { buildImageModel, IMAGE_MODEL, IMAGE_MODEL_DIR } from '../scripts/dev/build-image-model.mjs'
import { addPhotoModel, imagePath } from './images.mjs'
import { addPhoneAssets, phoneRun, writePhoneSection } from './phone.mjs'
import {
  bundleSize,
  cell,
  eventsIn,
  foreignCpuSince,
  foreignTicks,
  getJson,
  imageBodies,
  inputFor,
  jsonInit,
  maxRelDiff,
  measured,
  nodeFloor,
  post,
  postWith,
  requestParsing,
  waitForQuiet,
  warmCells,
  warmUp,
  workerdRss,
} from './measure.mjs'
import { speedRun } from './speed.mjs'
import { addHandModel, HAND_BEGIN, HAND_END, handMarkdown, handRun } from './hand.mjs'
import {
  BACKENDS,
  BEFORE,
  flag,
  log,
  MEMORY_REQUESTS,
  MEMORY_TOPUP_CAP_S,
  MODELS,
  QUICK,
  REPORT_DIR,
  sleep,
  DURATION,
} from './options.mjs'
import { latencySvg, machine, resultsMarkdown } from './report.mjs'

/** Folders of this run, removed at exit (scripts/tools/launch.mjs removes its own, and ends the servers it started). */
const scratch = new Set()
process.on('exit', () => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true })
})
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    log(`${signal}: stopping`)
    process.exit(130)
  })
}

/**
 * A fresh `wrangler dev` serving `assetsDir` on `backend`, ready once its port accepts connections
 * and without a request sent, so the first request is a cold one; `events()` are the Worker's log lines.
 */
async function startWrangler({ assetsDir, backend, vars = {} }) {
  const server = await startWranglerDev({
    assetsDir,
    // Every request's access-log line: the in-Worker times are read from them (measure.mjs).
    vars: { TF_BACKEND: backend, ACCESS_LOG: 'all', ...vars },
    ready: 'listening',
    readyTimeoutMs: 120_000,
  })
  return Object.assign(server, { events: () => eventsIn(server.logs()) })
}

// ------------------------------------------------------------------ runs, each on its own wrangler dev

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
    if (cold.status !== 200)
      throw new Error(`first predict on ${model} answered ${cold.status}: ${cold.text.slice(0, 500)}`)
    const ready = await getJson(`${server.url}/v2/health/ready`)
    if (ready.status !== 200)
      throw new Error(`/v2/health/ready answered ${ready.status}: ${JSON.stringify(ready.body)}`)
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
      log(
        `  ! asked for TF_BACKEND=${backend} but the Worker runs on ${actual}${fallback ? ` (fallback: ${fallback.reason})` : ' (is TF_BACKEND wired to configureBackend?)'}`,
      )
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
      log(
        `memory all models   worker/${backend.padEnd(4)} worker RSS with ${[model, ...loadOthers].join(', ')} loaded: ${all.worker?.toFixed(0)} MB`,
      )
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
    log(
      `memory ${label} worker RSS after ${served} requests: ${afterRequests.worker?.toFixed(0)} MB (proxy ${afterRequests.proxy?.toFixed(0)} MB)`,
    )

    let controlResult
    if (control) {
      const liveUrl = `${server.url}/v2/health/live`
      const live = await warmCells(
        server,
        liveUrl,
        undefined,
        `${'(no model)'.padEnd(14)} worker/${backend.padEnd(4)}`,
        { method: 'GET' },
      )
      const before = workerdRss(server)
      const r = await autocannon({ url: liveUrl, connections: 8, amount: MEMORY_REQUESTS, timeout: 60 })
      await sleep(500)
      const after = workerdRss(server)
      controlResult = {
        cells: live.cells,
        requests: r['2xx'],
        workerGrowthMb: after.worker - before.worker,
        proxyGrowthMb: after.proxy - before.proxy,
      }
      log(
        `memory (no model)     worker/${backend.padEnd(4)} ${r['2xx']} × GET /v2/health/live: worker RSS +${controlResult.workerGrowthMb.toFixed(0)} MB, proxy +${controlResult.proxyGrowthMb.toFixed(0)} MB`,
      )
    }

    const failures = server.events().filter((e) => e.level === 'error')
    if (failures.length > 0)
      log(`  ! the Worker logged ${failures.length} error line(s): ${JSON.stringify(failures[0]).slice(0, 300)}`)
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

/**
 * The pattern the cache exists to avoid: `--var MODEL_CACHE:off`, so every request fetches, builds
 * and warms its model up (src/isolate.ts), against the warm cache's cells of the main runs.
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
        const r = await measured(
          server,
          `${server.url}/v1/models/${model}:predict`,
          c,
          jsonInit(inputFor(model).body),
          `cache off ${model.padEnd(14)} worker/wasm`,
        )
        if (r.logged > 0 && r.misses !== r.logged)
          log(`  ! MODEL_CACHE=off, yet ${r.logged - r.misses} of ${r.logged} requests were not cache misses`)
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
  if (MODELS.includes(IMAGE_MODEL)) addPhotoModel(assetsDir)
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
          const r = await measured(
            server,
            `${server.url}/v1/models/${model}:predict`,
            c,
            jsonInit(inputFor(base).body),
            `batching ${model.padEnd(20)} worker/wasm`,
          )
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
          headers: {
            'content-type': 'application/octet-stream',
            'inference-header-content-length': String(bodies.headerLength),
          },
          body: bodies.binary,
        },
      }
      const answers = {}
      for (const [kind, init] of Object.entries(inits)) {
        const r = await postWith(url, init)
        if (r.status !== 200)
          throw new Error(
            `v2 infer on ${IMAGE_MODEL} with a ${kind} body answered ${r.status}: ${r.text.slice(0, 500)}`,
          )
        answers[kind] = JSON.parse(r.text).outputs[0].data
        await postWith(url, init)
      }
      const agreement = maxRelDiff(answers.binary, answers.json)
      log(
        `binary ${IMAGE_MODEL}: JSON body ${bodies.json.length} B, binary body ${bodies.binary.length} B; answers agree within ${agreement.toExponential(1)} (relative)`,
      )
      const cells = []
      for (const c of [1, 8]) {
        for (const [kind, init] of Object.entries(inits))
          cells.push({
            kind,
            ...(await measured(server, url, c, init, `v2 infer ${IMAGE_MODEL} ${kind} body worker/wasm`)),
          })
      }
      binary = {
        inputName,
        jsonBytes: bodies.json.length,
        binaryBytes: bodies.binary.length,
        headerLength: bodies.headerLength,
        agreement,
        cells,
        bodies,
      }
    }
    const photo = MODELS.includes(IMAGE_MODEL) ? await imagePath(server, measured) : undefined
    return { actual, batching, batchingOff: off.map((e) => ({ model: e.model, reason: e.reason })), binary, photo }
  } finally {
    await server.stop()
  }
}

// ------------------------------------------------------------------ main

/** Parameters and weight MiB of the image model, from its model.json (float32 weights). */
function imageModelInfo() {
  const json = JSON.parse(readFileSync(join(IMAGE_MODEL_DIR, 'model.json'), 'utf8'))
  const params = json.weightsManifest
    .flatMap((g) => g.weights)
    .reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1), 0)
  return { params, weightMb: (4 * params) / 2 ** 20 }
}

/** RESULTS.md and latency.svg into REPORT_DIR. */
function writeReport(data) {
  mkdirSync(join(ROOT, REPORT_DIR), { recursive: true })
  writeFileSync(join(ROOT, REPORT_DIR, 'RESULTS.md'), resultsMarkdown(data))
  writeFileSync(join(ROOT, REPORT_DIR, 'latency.svg'), latencySvg(data.floors, data.runs))
}

/** `--render`: rewrites RESULTS.md and latency.svg from the last run's bench/.work/results.json, measuring nothing. */
function render() {
  const saved = JSON.parse(readFileSync(join(ROOT, 'bench', '.work', 'results.json'), 'utf8'))
  const data = {
    imageInfo: existsSync(join(IMAGE_MODEL_DIR, 'model.json')) ? imageModelInfo() : {},
    totalS: Number.NaN,
    ...saved,
  }
  writeReport(data)
  log(`rewrote ${REPORT_DIR}/RESULTS.md and ${REPORT_DIR}/latency.svg from bench/.work/results.json`)
}

/**
 * `--hand-only`: the issue 25 run alone; its section of REPORT_DIR/RESULTS.md is replaced (or added)
 * in place, between the markers, so the rest of a report from an earlier run stays as it was.
 */
async function handOnly(assetsDir) {
  const saved = join(ROOT, 'bench', '.work', 'hand.json')
  const hand = assetsDir === undefined ? JSON.parse(readFileSync(saved, 'utf8')) : await handRun(assetsDir)
  const file = join(ROOT, REPORT_DIR, 'RESULTS.md')
  const section = `${HAND_BEGIN}\n${handMarkdown(hand).join('\n')}\n${HAND_END}`
  const old = existsSync(file) ? readFileSync(file, 'utf8') : ''
  const at = old.indexOf(HAND_BEGIN)
  const end = old.indexOf(HAND_END)
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(
    file,
    at >= 0 && end > at
      ? `${old.slice(0, at)}${section}${old.slice(end + HAND_END.length)}`
      : `${old.trimEnd()}\n\n${section}\n`,
  )
  mkdirSync(join(ROOT, 'bench', '.work'), { recursive: true })
  writeFileSync(saved, `${JSON.stringify(hand, null, 1)}\n`)
  log(`wrote the hand-written Worker section of ${REPORT_DIR}/RESULTS.md`)
}

/** `--phone-only`: the phone-photo run alone (or, with --render, the last one's); its section of REPORT_DIR/RESULTS.md replaced in place. */
async function phoneOnly(assetsDir) {
  const saved = join(ROOT, 'bench', '.work', 'phone.json')
  const phone =
    assetsDir === undefined
      ? JSON.parse(readFileSync(saved, 'utf8'))
      : await phoneRun(assetsDir, await addPhoneAssets(assetsDir))
  mkdirSync(join(ROOT, REPORT_DIR), { recursive: true })
  writePhoneSection(join(ROOT, REPORT_DIR, 'RESULTS.md'), phone)
  mkdirSync(join(ROOT, 'bench', '.work'), { recursive: true })
  writeFileSync(saved, `${JSON.stringify(phone, null, 1)}\n`)
  log(`wrote the phone-photo section of ${REPORT_DIR}/RESULTS.md`)
}

async function main() {
  if (flag('render'))
    return flag('hand-only') ? handOnly(undefined) : flag('phone-only') ? phoneOnly(undefined) : render()
  const began = performance.now()
  log(`models ${MODELS.join(', ')}; backends ${BACKENDS.join(', ')}; ${DURATION} s per cell${QUICK ? ' (quick)' : ''}`)

  const built = await buildImageModel({ quiet: false })
  if (!built.built)
    log(`image model: using ${IMAGE_MODEL_DIR} (delete it or run \`npm run build:bench-model -- --force\` to rebuild)`)
  const imageInfo = imageModelInfo()

  // The repository the Worker serves: model-assets (without its index) plus the image model.
  const work = mkdtempSync(join(tmpdir(), 'warmserve-bench-'))
  scratch.add(work)
  const assetsDir = join(work, 'assets')
  mkdirSync(assetsDir)
  cpSync(join(ROOT, 'model-assets'), assetsDir, { recursive: true, filter: (src) => !src.endsWith('_index.json') })
  cpSync(dirname(IMAGE_MODEL_DIR), join(assetsDir, IMAGE_MODEL), { recursive: true })
  for (const model of MODELS)
    if (!existsSync(join(assetsDir, model, '1', 'model.json')))
      throw new Error(`no ${model}/1/model.json in ${assetsDir}`)
  addHandModel(assetsDir)
  log(`assets: ${assetsDir}`)
  if (flag('hand-only')) return handOnly(assetsDir)
  if (flag('phone-only')) return phoneOnly(assetsDir)
  const bundle = await bundleSize(assetsDir)

  await waitForQuiet(QUICK ? 10 : 180)
  const foreignBefore = foreignTicks()
  const floors = flag('extras-only') ? [] : await nodeFloor(assetsDir, MODELS, BACKENDS)

  let speed
  if (!flag('extras-only') && MODELS.includes('iris') && MODELS.includes(IMAGE_MODEL)) {
    try {
      speed = await speedRun(assetsDir, { before: BEFORE })
    } catch (error) {
      log(`  ! the anchor run failed: ${error?.stack ?? error}`)
    }
  }

  let hand
  if (!flag('extras-only')) {
    try {
      hand = await handRun(assetsDir)
    } catch (error) {
      log(`  ! the hand-written Worker run failed: ${error?.stack ?? error}`)
    }
  }

  const runs = []
  for (const backend of flag('extras-only') || flag('speed-only') ? [] : BACKENDS) {
    for (const [i, model] of MODELS.entries()) {
      const last = i === MODELS.length - 1
      runs.push(
        await workerRun(assetsDir, model, backend, {
          loadOthers: last ? MODELS.slice(0, -1) : [],
          control: i === 0 && backend === BACKENDS[0],
        }),
      )
    }
  }

  // The baselines: the cache off, batching, binary bodies (and their parsing, timed here).
  let cacheOff
  if (!flag('speed-only'))
    try {
      cacheOff = await cacheOffRun(assetsDir)
    } catch (error) {
      log(`  ! the cache-off run failed: ${error?.stack ?? error}`)
    }
  let extra
  let parsing
  if (!flag('speed-only'))
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

  // Last, as its models join the repository only now.
  let phone
  if (!flag('speed-only'))
    try {
      phone = await phoneRun(assetsDir, await addPhoneAssets(assetsDir))
    } catch (error) {
      log(`  ! the phone-photo run failed: ${error?.stack ?? error}`)
    }

  const totalS = (performance.now() - began) / 1000
  const env = { ...machine(), foreignCpuS: foreignCpuSince(foreignBefore) }
  const data = { env, floors, runs, imageInfo, totalS, cacheOff, extra, parsing, bundle, speed, hand, phone }
  writeReport(data)
  if (phone) writePhoneSection(join(ROOT, REPORT_DIR, 'RESULTS.md'), phone)
  mkdirSync(join(ROOT, 'bench', '.work'), { recursive: true })
  writeFileSync(join(ROOT, 'bench', '.work', 'results.json'), `${JSON.stringify(data, null, 1)}\n`)
  log(`wrote ${REPORT_DIR}/RESULTS.md and ${REPORT_DIR}/latency.svg in ${totalS.toFixed(0)} s`)
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`[bench] failed: ${error?.stack ?? error}`)
    process.exit(1)
  },
)
