/** The bench's report: bench/RESULTS.md (targets, tables) and bench/latency.svg, from one run's figures. */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus } from 'node:os'
import { dirname } from 'node:path'
import { ROOT } from '../scripts/tools/launch.mjs'
import { IMAGE_MODEL, IMAGE_SIZE } from '../scripts/dev/build-image-model.mjs'
import { bytes, fmt, inWorker, ratio, times } from './format.mjs'
import { imagePathMarkdown } from './images.mjs'
import { obstaclesMarkdown } from './workerd-floor.mjs'
import { HAND_BEGIN, HAND_END, handMarkdown } from './hand.mjs'
import { BACKENDS, CONCURRENCY, DURATION, ISOLATE_LIMIT_MB, MODELS } from './options.mjs'

const require = createRequire(import.meta.url)

export function machine() {
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

/** The speed targets against this run's figures. */
function targetsMarkdown({ floors, runs, cacheOff, extra, parsing, bundle }) {
  const cellOf = (model, backend, c) =>
    runs.find((r) => r.model === model && r.actual === backend)?.cells.find((x) => x.c === c && !x.skipped)
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
          (bin?.serverP50 !== undefined
            ? `; binary body (v2): ${bin.serverP50} ms = ${times(bin.serverP50 / f.p50)}`
            : '')
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
      f && w
        ? `${w.p50} ms − ${fmt(f.p50, 2)} ms = +${fmt(w.p50 - f.p50)} ms${plumbing ? ` (the plumbing alone, \`GET /v2/health/live\`: ${plumbing.p50} ms)` : ''}`
        : '—',
      f && w?.serverP50 !== undefined
        ? `${w.serverP50} ms − ${fmt(f.p50, 2)} ms = +${fmt(w.serverP50 - f.p50, 2)} ms (mean ${fmt(w.serverMean, 2)} ms; whole-ms clock)`
        : '—',
      `${verdict(ok)} (in-Worker)`,
      ok === undefined
        ? ''
        : ok
          ? `${fmt(f.p50 + 1 - w.serverP50, 2)} ms to spare`
          : `${fmt(w.serverP50 - f.p50 - 1, 2)} ms over`,
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
      warm && off
        ? `${off.serverP50} ms ÷ ${warm.serverP50} ms = ${times(inWorker)} (means: ${fmt(off.serverMean)} ÷ ${fmt(warm.serverMean, 2)} ms = ${times(off.serverMean / warm.serverMean)})`
        : '—',
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
      w && k
        ? `${k.serverP50} ms ÷ ${w.serverP50} ms = ${times(inWorker)} (in Node: ${fw && fc ? times(fc.p50 / fw.p50) : '—'})`
        : '—',
      `${verdict(ok)} (in-Worker p50)`,
      ok === undefined
        ? ''
        : ok
          ? `${times(inWorker)} against 10×`
          : `${times(inWorker)} against 10×: short by ${times(10 / inWorker)} (${((1 - inWorker / 10) * 100).toFixed(0)}%)`,
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
      ok === undefined
        ? ''
        : ok
          ? `${times(gain)} against 1.5×`
          : `${times(gain)} against 1.5×: short by ${times(1.5 / gain)} (${fmt(1.5 * base.rps - batched.rps)} req/s)`,
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
        (j && b
          ? `; whole request in the Worker: p50 ${j.serverP50} → ${b.serverP50} ms, mean ${fmt(j.serverMean)} → ${fmt(b.serverMean)} ms`
          : ''),
      `${verdict(ok)} (parsing time)`,
      ok === undefined
        ? ''
        : ok
          ? `${times(gain)} against 3×`
          : `${times(gain)} against 3×: short by ${times(3 / gain)}`,
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
    '## Targets',
    '',
    '**client** = what autocannon saw through `wrangler dev`, which adds its local plumbing (a proxy `workerd`, then the',
    `static-assets router) that production does not have${plumbing ? ` — \`GET /v2/health/live\`, no model, takes ${plumbing.p50} ms p50 at c=1 here` : ''}.`,
    "**in-Worker** = the Worker's own time per request (its access-log line's `ms`, whole milliseconds). The",
    '**verdict** column says which figure it uses: the in-Worker one for latency targets (what production would',
    "see, less the network), autocannon's req/s for throughput. The floor is tf.js `predictOnBatch` in this Node process.",
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
  const cellOf = (model, backend, c) =>
    runs.find((r) => r.model === model && r.actual === backend)?.cells.find((x) => x.c === c && !x.skipped)
  if (cacheOff) {
    push(
      '### Model cache off: a build per request',
      '',
      'A separate `wrangler dev` with `--var MODEL_CACHE:off`: every request fetches the model from the assets,',
      'builds it, warms it up and disposes it afterwards (src/isolate.ts) — the pattern the cache exists to',
      "avoid — against the warm cache's cells above (wasm). **load** = the medians of the Worker's per-request",
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
      const cfg = r.batchingConfig
        ? `${r.batchingConfig.max_batch_size}, ${r.batchingConfig.max_queue_delay_ms} ms`
        : 'off'
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
        "Worker's own functions — `parseJson` (src/http/body.ts), `parseBody(InferRequest)` (src/protocols/schemas.ts),",
        '`flatten` / `toTypedArray` (src/protocols/tensors.ts), `splitBinary` / `decodeBinary` (src/protocols/v2/binary.ts) — bundled by esbuild during',
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
  push(...imagePathMarkdown(extra?.photo, extra?.binary))
  return lines
}

export function resultsMarkdown({
  env,
  floors,
  runs,
  imageInfo,
  totalS,
  cacheOff,
  extra,
  parsing,
  bundle,
  speed,
  hand,
}) {
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
      `${fmt(imageInfo.weightMb, 2)} MiB of weights; seeded random weights, built by scripts/dev/build-image-model.mjs).`,
    '',
    ...speedMarkdown({ speed, floors, runs, extra }),
    ...(hand ? [HAND_BEGIN, ...handMarkdown(hand), HAND_END, ''] : []),
    ...targetsMarkdown({ floors, runs, cacheOff, extra, parsing, bundle }),
    '## Warm predict latency and throughput',
    '',
    '`POST /v1/models/{m}:predict`, one example per request. **floor** = tf.js `predictOnBatch` + reading the',
    'result, called directly in Node on the same backend and input, one at a time (its req/s is 1 ÷ mean).',
    "**× floor** = the Worker's p50 ÷ the floor's p50 on the same backend. autocannon reports whole milliseconds.",
    "**in-Worker** = the Worker's own time per request (its access-log line's `ms`: routing, JSON, validation,",
    "inference, response), so the gap to p50 is `wrangler dev`'s local plumbing — a proxy `workerd`, then the",
    'static-assets router, then the Worker — which production does not have. The `(no model)` rows measure that',
    'plumbing alone.',
    '',
    '| model | variant | backend | conc. | p50 ms | p99 ms | req/s | in-Worker p50 / p99 ms | p50 × floor | req/s ÷ floor |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|',
  )
  for (const model of MODELS) {
    for (const backend of BACKENDS) {
      const f = floorOf(model, backend)
      if (f)
        push(
          `| ${model} | floor (Node, in-process) | ${backend} | 1 | ${fmt(f.p50, 2)} | ${fmt(f.p99, 2)} | ${fmt(f.rps)} | | 1.0× | 1.0× |`,
        )
    }
    for (const backend of BACKENDS) {
      const run = runOf(model, backend)
      if (!run) continue
      const f = floorOf(model, run.actual)
      const note = run.actual !== backend ? ` (asked ${backend})` : ''
      const row = (variant, backendText, c) =>
        `| ${model} | ${variant} | ${backendText} | ${c.c} | ${fmt(c.p50, 0)} | ${fmt(c.p99, 0)} | ${fmt(c.rps)} | ${inWorker(c)} | ${ratio(c.p50, f?.p50)} | ${f ? ratio(c.rps, f.rps, 2) : '—'} |` +
        (c.failed ? ` ${c.failed} failed` : '')
      for (const c of run.cells)
        push(
          c.skipped
            ? `| ${model} | worker | ${run.actual}${note} | ${c.c} | skipped | | | | | |`
            : row('worker', `${run.actual}${note}`, c),
        )
      for (const c of (run.actual === cacheOff?.actual ? cacheOff.cells : []).filter((x) => x.model === model)) {
        push(row('worker, cache off (build per request)', cacheOff.actual, c))
      }
    }
  }
  const controlRun = runs.find((r) => r.control)
  if (controlRun) {
    for (const c of controlRun.control.cells) {
      if (!c.skipped)
        push(
          `| (no model) | worker, \`GET /v2/health/live\` | ${controlRun.actual} | ${c.c} | ${fmt(c.p50, 0)} | ${fmt(c.p99, 0)} | ${fmt(c.rps)} | ${inWorker(c)} | | |`,
        )
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
      push(
        `| ${model} | ${c} | ${w && k ? ratio(k.p50, w.p50) : '—'} | ${w && k ? ratio(k.serverP50, w.serverP50) : '—'} | ${w && k ? ratio(w.rps, k.rps) : '—'} |`,
      )
    }
  }
  push(
    '',
    '## Cold start',
    '',
    "A fresh `wrangler dev` per row; the first request is that model's predict (no request before it, so it",
    "also pays for the isolate, the module's global scope and the backend's start). fetch / build / warmup are",
    "the Worker's own `model.loaded` log line; **rest** = first predict − (fetch + build + warmup) − warm p50 at",
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
    "Each row is a fresh `wrangler dev`. **counted** is what the cache's budget counts for the model with one row",
    "running (weights, kernel state, activations: the `model.loaded` line's `memoryBytes`), next to the wasm heap",
    "growth its load caused (`heapGrowthBytes`) and the process's RSS growth.",
    '',
    `| model | backend | weights | counted | wasm heap Δ | idle MB | after load MB | load Δ MB | load Δ ÷ ${ISOLATE_LIMIT_MB} MB | after N requests MB | N | proxy after N MB |`,
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  )
  for (const model of MODELS) {
    for (const backend of BACKENDS) {
      const run = runOf(model, backend)
      if (!run) continue
      const delta = run.afterLoad.worker - run.idle.worker
      push(
        `| ${model} | ${run.actual} | ${bytes(run.loaded?.weightBytes ?? run.loaded?.bytes)} | ${bytes(run.loaded?.memoryBytes)} | ${bytes(run.loaded?.heapGrowthBytes)} | ${fmt(run.idle.worker, 0)} | ${fmt(run.afterLoad.worker, 0)} | ${fmt(delta, 0)} | ${fmt((100 * delta) / ISOLATE_LIMIT_MB, 0)}% | ${fmt(run.afterRequests.worker, 0)} | ${run.served} | ${fmt(run.afterRequests.proxy, 0)} |`,
      )
    }
  }
  for (const run of runs.filter((r) => r.all !== undefined)) {
    const delta = run.all.worker - run.idle.worker
    push(
      `| all ${MODELS.length} models, loaded one after another | ${run.actual} | | | | ${fmt(run.idle.worker, 0)} | ${fmt(run.all.worker, 0)} | ${fmt(delta, 0)} | ${fmt((100 * delta) / ISOLATE_LIMIT_MB, 0)}% | | | |`,
    )
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
      push(
        `- ${r.model}: asked for \`TF_BACKEND=${r.backend}\`, the Worker ran on \`${r.actual}\`${r.fallback ? ` (fallback: ${r.fallback})` : ' — TF_BACKEND is not wired to configureBackend()'}.`,
      )
    }
  }
  push('', '![warm latency](latency.svg)', '')
  return lines.join('\n')
}

/** Latency p50 (solid) and p99 (dashed) against concurrency, one panel per model, log-scaled y. */
export function latencySvg(floors, runs) {
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
    for (const run of runs.filter((r) => r.model === model))
      for (const c of run.cells) if (!c.skipped) values.push(Math.max(c.p50, 0.5), Math.max(c.p99, 0.5))
    for (const f of floors.filter((f) => f.model === model)) values.push(Math.max(f.p50, 0.05))
    for (const c of runs.find((r) => r.control)?.control.cells ?? []) if (!c.skipped) values.push(Math.max(c.p50, 0.5))
    if (values.length === 0) return
    const lo = 10 ** Math.floor(Math.log10(Math.min(...values)))
    const hi = 10 ** Math.ceil(Math.log10(Math.max(...values)))
    const xs = CONCURRENCY.map((_, i) => x0 + margin.left + (plotW * i) / (CONCURRENCY.length - 1))
    const y = (v) =>
      margin.top + plotH - (plotH * (Math.log10(Math.max(v, lo)) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo))
    parts.push(
      `<text x="${x0 + margin.left + plotW / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${esc(model)}</text>`,
    )
    parts.push(
      `<rect x="${x0 + margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`,
    )
    for (let v = lo; v <= hi * 1.0001; v *= 10) {
      parts.push(
        `<line x1="${x0 + margin.left}" x2="${x0 + margin.left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`,
      )
      parts.push(
        `<text x="${x0 + margin.left - 4}" y="${y(v) + 4}" text-anchor="end">${v >= 1 ? v : v.toPrecision(1)}</text>`,
      )
    }
    CONCURRENCY.forEach((c, i) =>
      parts.push(`<text x="${xs[i]}" y="${margin.top + plotH + 14}" text-anchor="middle">${c}</text>`),
    )
    parts.push(
      `<text x="${x0 + margin.left + plotW / 2}" y="${margin.top + plotH + 30}" text-anchor="middle">concurrent connections</text>`,
    )
    parts.push(
      `<text transform="translate(${x0 + 14} ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">latency ms (log)</text>`,
    )
    for (const f of floors.filter((f) => f.model === model)) {
      parts.push(
        `<line x1="${x0 + margin.left}" x2="${x0 + margin.left + plotW}" y1="${y(f.p50)}" y2="${y(f.p50)}" stroke="${colors[f.backend]}" stroke-dasharray="2 3" opacity="0.8"/>`,
      )
    }
    const control = runs.find((r) => r.control)?.control
    if (control) {
      const points = control.cells.flatMap((c) =>
        c.skipped ? [] : [[xs[CONCURRENCY.indexOf(c.c)], y(Math.max(c.p50, 0.5))]],
      )
      parts.push(
        `<polyline fill="none" stroke="#888" stroke-width="1.5" points="${points.map((p) => p.map((v) => v.toFixed(1)).join(',')).join(' ')}"/>`,
      )
    }
    for (const run of runs.filter((r) => r.model === model)) {
      const color = colors[run.actual] ?? '#333'
      for (const [key, dash] of [
        ['p50', ''],
        ['p99', ' stroke-dasharray="6 4"'],
      ]) {
        const points = run.cells.flatMap((c) =>
          c.skipped ? [] : [[xs[CONCURRENCY.indexOf(c.c)], y(Math.max(c[key], 0.5))]],
        )
        if (points.length === 0) continue
        parts.push(
          `<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${points.map((p) => p.map((v) => v.toFixed(1)).join(',')).join(' ')}"/>`,
        )
        for (const [px, py] of points)
          parts.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="2.5" fill="${color}"/>`)
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
    parts.push(
      `<line x1="${lx}" x2="${lx + 28}" y1="${y}" y2="${y}" stroke="${colors[backend]}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`,
    )
    parts.push(`<text x="${lx + 34}" y="${y + 4}">${esc(label)}</text>`)
  })
  parts.push('</svg>')
  return `${parts.join('\n')}\n`
}

/**
 * Issue 13's targets, from bench/speed.mjs's interleaved run on the deploy bundle (no wrangler dev
 * proxy) against the anchor, the floor and, with `--before`, the bundle of another git ref.
 */
export function speedMarkdown({ speed, floors, runs, extra }) {
  if (!speed) return []
  const l = speed.latency
  const floorOf = (model) => floors.find((f) => f.model === model && f.backend === 'wasm')
  const verdict = (ok) => (ok === undefined ? 'not measured' : ok ? '**met**' : '**missed**')
  const ms = (v) => `${fmt(v, 2)} ms`
  const rows = []
  {
    const w = l['ws:image-json']
    const a = l['anchor:image-json']
    const r = w.p50 / a.p50
    rows.push([
      `Image model (\`${IMAGE_MODEL}\`, 128×128×3), TF Serving JSON (${fmt(speed.bodies.imageJsonBytes / 1024, 0)} KiB): p50 ≤ 0.80× the hand-written Node server`,
      `${ms(w.p50)} ÷ ${ms(a.p50)} = ${`${fmt(r, 2)}×`}`,
      verdict(r <= 0.8),
      r <= 0.8
        ? `${ms(0.8 * a.p50 - w.p50)} under the line (${ms(0.8 * a.p50)})`
        : `${ms(w.p50 - 0.8 * a.p50)} over the line (${ms(0.8 * a.p50)})`,
    ])
  }
  {
    const w = l['ws:image-v2-binary']
    // The floor timed in the same round-robin when the run has it, else the one timed before the runs.
    const f = l['floor:image'] ?? floorOf(IMAGE_MODEL)
    const r = f ? w.p50 / f.p50 : undefined
    rows.push([
      `Same model, Open Inference Protocol binary: p50 ≤ 1.25× tf.js in-process${l['floor:image'] ? ' (interleaved)' : ' (timed before the runs, not interleaved)'}`,
      f ? `${ms(w.p50)} ÷ ${ms(f.p50)} = ${`${fmt(r, 2)}×`}` : '—',
      verdict(r === undefined ? undefined : r <= 1.25),
      r === undefined
        ? ''
        : r <= 1.25
          ? `${ms(1.25 * f.p50 - w.p50)} under the line (${ms(1.25 * f.p50)})`
          : `${ms(w.p50 - 1.25 * f.p50)} over the line (${ms(1.25 * f.p50)})`,
    ])
  }
  {
    const iris = l['ws:iris']
    const noop = l['ws:noop']
    const f = l['floor:iris'] ?? floorOf('iris')
    // The inference as a request pays it: one run per request in a Worker with no warmserve code
    // (bench/workerd-floor.mjs), as the issue's own 0.48 ms counted it (0.84 ms less 0.36 ms of
    // inference); else the Node hot loop, which no request reaches.
    const once = l['workerd:iris'] && l['workerd:noop'] ? l['workerd:iris'].p50 - l['workerd:noop'].p50 : undefined
    const inference = once ?? f?.p50
    const own = inference === undefined ? undefined : iris.p50 - noop.p50 - inference
    rows.push([
      "iris: the Worker's own time per request beyond a no-op request and the inference ≤ 0.35 ms",
      once !== undefined
        ? `${ms(iris.p50)} − ${ms(noop.p50)} (no-op) − ${ms(once)} (one inference per request in workerd) = ${ms(own)}; with the inference at the Node hot loop (${ms(f?.p50)}) instead: ${ms(iris.p50 - noop.p50 - f?.p50)}`
        : f
          ? `${ms(iris.p50)} − ${ms(noop.p50)} (no-op) − ${ms(f.p50)} (inference, in-process) = ${ms(own)}`
          : '—',
      verdict(own === undefined ? undefined : own <= 0.35),
      own === undefined ? '' : own <= 0.35 ? `${ms(0.35 - own)} to spare` : `${ms(own - 0.35)} over`,
    ])
  }
  for (const model of ['iris', IMAGE_MODEL]) {
    const key = model === 'iris' ? 'iris' : 'image-json'
    const now = speed.throughput[`ws:${key}`]
    const then = speed.throughput[`before:${key}`]
    const dev = runs.find((r) => r.model === model && r.actual === 'wasm')?.cells.find((x) => x.c === 8 && !x.skipped)
    const r = then ? now.rps / then.rps : undefined
    rows.push([
      `Throughput at concurrency 8 not lower than before, \`${model}\` (TF Serving JSON)`,
      `${fmt(now.rps)} req/s${then ? ` vs ${fmt(then.rps)} req/s on ${speed.before} = ${`${fmt(r, 2)}×`}` : ''}; anchor ${fmt(speed.throughput[`anchor:${key}`].rps)} req/s` +
        (dev ? `; under \`wrangler dev\`: ${fmt(dev.rps)} req/s` : ''),
      // Alternating halves on a shared machine: within 5% is the noise of one run, not a loss.
      verdict(r === undefined ? undefined : r >= 0.95),
      r === undefined
        ? 'run with `--before main` to compare'
        : r >= 1
          ? `${fmt(100 * (r - 1), 0)}% higher`
          : `${fmt(100 * (1 - r), 0)}% lower${r >= 0.95 ? ' (within the run-to-run noise)' : ''}`,
    ])
  }
  {
    const at = (model) => extra?.batching?.find((b) => b.model === model && b.c === 32)
    const on = at('digits-batched')
    const off = at('digits')
    const r = on && off ? on.rps / off.rps : undefined
    rows.push([
      'Batching re-measured after the reader, `digits` at c=32 (max_batch_size 32, delay 0 ms; under `wrangler dev`): stays off by default unless it pays (≥ 1.0×)',
      r === undefined ? '—' : `${fmt(on.rps)} ÷ ${fmt(off.rps)} req/s = ${`${fmt(r, 2)}×`} (was 0.84×)`,
      r === undefined ? 'not measured' : r >= 1 ? '**pays**: reconsider the default' : '**stays off**',
      '',
    ])
  }
  const lines = [
    '## Targets (issue 13): the request path against the server a user would write',
    '',
    'Measured on the deploy bundle (`wrangler deploy --dry-run`) served by workerd through Miniflare, as `npm start` serves it —',
    "no `wrangler dev` proxy — interleaved in one run with **the anchor** (bench/anchor.mjs: Node's `http` + `JSON.parse` +",
    '`tf.tensor` + tf.js wasm, the same models loaded once, the same bodies)' +
      (speed.before ? ` and the bundle of \`${speed.before}\` (**before**)` : '') +
      `: ${speed.rounds} rounds of ${speed.sliceMs} ms slices per target, sequential requests timed to the microsecond by`,
    "Node's `http` (keep-alive). Throughput: autocannon at 8 connections, two alternating halves per target. The floor is",
    'tf.js `predictOnBatch` + reading the result in this process (wasm; `floor:` rows when timed in the same round-robin).',
    'The machine is shared with other test runs: absolute figures are noisy, ratios are interleaved.',
    '',
    '| target | measured | verdict | by how much |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
    '| request (sequential) | p50 ms | p90 ms | mean ms | n |',
    '|---|---:|---:|---:|---:|',
    ...Object.entries(l).map(([k, s]) => `| ${k} | ${fmt(s.p50, 2)} | ${fmt(s.p90, 2)} | ${fmt(s.mean, 2)} | ${s.n} |`),
    '',
    `warmserve and the anchor answer the image model within ${speed.agreement.toExponential(1)} of each other (relative). ` +
      `Bodies: TF Serving JSON ${speed.bodies.imageJsonBytes} B, v2 JSON ${speed.bodies.v2JsonBytes} B, v2 binary ${speed.bodies.binaryBytes} B.`,
    '',
    ...obstaclesMarkdown(l, speed),
  ]
  return lines
}
