/**
 * Phone photos (issue 25, item 3): 12 MP JPEGs (4032×3024, baseline 4:2:0, made from the fixture
 * photographs by test/setup/phone-photos.ts) for a 224×224 model, nsfwjs's MobileNetV2:
 *   - through warmserve's deploy bundle (workerd through Miniflare), sequential raw-body requests to
 *     `:classify`, its Server-Timing `decode` (decode and preprocess) and `infer`;
 *   - decode + preprocess alone in workerd (bench/decode-worker.ts, warmserve's own functions):
 *     the decode at the resize's points (warmserve's path), the 1/8 DCT-scaled decode (the path
 *     before) and mozjpeg's full decode (under the defaults 12 MP whole is refused);
 *   - the scores: warmserve's answer against the same model fed the full decode's preprocessed row.
 * `npm run bench -- --phone-only` runs it alone and replaces its section of RESULTS.md in place.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildBundle, startBundle } from '../scripts/tools/launch.mjs'
import { fmt } from './format.mjs'
import { log, QUICK } from './options.mjs'

/** nsfwjs's MobileNetV2 with an image input and labels (warmserve's route), and without (fed the reference rows). */
const MODEL = 'nsfw-phone'
const TENSOR_MODEL = 'nsfw-phone-tensor'
const LABELS = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy']
const REQUESTS = QUICK ? 5 : 20
const RUNS = { sampled: QUICK ? 3 : 10, scaled: QUICK ? 3 : 10, full: QUICK ? 1 : 3 }

export const PHONE_BEGIN = '<!-- phone photos (bench/phone.mjs) -->'
export const PHONE_END = '<!-- end phone photos -->'

/** Adds the two models and the phone photos to the repository `assetsDir`; returns the photos' folder. */
export async function addPhoneAssets(assetsDir) {
  // Node 22 strips the types of these test helpers (npm's own node runs the bench).
  const { addNsfwModel } = await import('../test/e2e/support/models.ts')
  const { writePhonePhotos } = await import('../test/setup/phone-photos.ts')
  for (const name of [MODEL, TENSOR_MODEL]) addNsfwModel(assetsDir, name, 'mobilenet_v2')
  const config = {
    inputs: { input_1: { image: { size: [224, 224], channels: 3, range: [0, 1] } } },
    labels: LABELS,
    classify: { top_k: LABELS.length, activation: 'none' },
  }
  writeFileSync(join(assetsDir, MODEL, 'config.json'), `${JSON.stringify(config, null, 2)}\n`)
  const photos = join(assetsDir, '..', 'phone-photos')
  mkdirSync(photos, { recursive: true })
  await writePhonePhotos(photos)
  return photos
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const timing = (header, name) => Number(new RegExp(`${name};dur=([\\d.]+)`).exec(header ?? '')?.[1])

async function json(url, init) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(120_000) })
  const text = await res.text()
  if (!res.ok) throw new Error(`${url}: ${res.status} ${text.slice(0, 300)}`)
  return JSON.parse(text)
}

/** The phone-photo run; `photos` from addPhoneAssets. */
export async function phoneRun(assetsDir, photos) {
  log('phone photos: warmserve and the decode Worker')
  const server = await startBundle({ assetsDir })
  const decoder = await startBundle({
    bundle: await buildBundle({ config: 'bench/decode-worker.toml' }),
    assetsDir,
    ready: 'listening',
  })
  const results = []
  try {
    for (const name of ['phone-chelsea.jpg', 'phone-rocket.jpg', 'phone-camera.jpg']) {
      const body = readFileSync(join(photos, name))
      const init = { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body }
      const decode = []
      const infer = []
      let ranked
      for (let i = 0; i <= REQUESTS; i++) {
        const res = await fetch(`${server.url}/v1/models/${MODEL}:classify`, init)
        const text = await res.text()
        if (res.status !== 200) throw new Error(`:classify ${name}: ${res.status} ${text.slice(0, 300)}`)
        ranked = JSON.parse(text)
        if (i === 0) continue // the load
        decode.push(timing(res.headers.get('server-timing'), 'decode'))
        infer.push(timing(res.headers.get('server-timing'), 'infer'))
      }
      const scores = LABELS.map((label) => ranked.find((r) => r.label === label).score)
      const at = (mode, n, row = '') => json(`${decoder.url}/decode?mode=${mode}&n=${n}${row}`, init)
      await at('sampled', 2) // warms the isolate's code
      await at('scaled', 2)
      const sampled = await at('sampled', RUNS.sampled)
      const scaled = await at('scaled', RUNS.scaled, '&row=1')
      const full = await at('full', RUNS.full, '&row=1')
      const scoresOf = async (row) =>
        (
          await json(`${server.url}/v1/models/${TENSOR_MODEL}:predict`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ instances: [chunk(row, 224 * 3).map((r) => chunk(r, 3))] }),
          })
        ).predictions[0]
      const reference = await scoresOf(full.row)
      const gapOf = (values) => Math.max(...values.map((v, i) => Math.abs(v - reference[i])))
      const gap = gapOf(scores)
      const scaledGap = gapOf(await scoresOf(scaled.row))
      log(
        `  ${name}: decode p50 ${median(decode)} ms in warmserve; sampled ${fmt(sampled.ms, 1)} ms, 1/8 ${fmt(scaled.ms, 1)} ms, full ${fmt(full.ms, 0)} ms; gap ${gap.toFixed(4)} (1/8: ${scaledGap.toFixed(4)})`,
      )
      results.push({
        name,
        bytes: body.length,
        decode: median(decode),
        infer: median(infer),
        sampled: { ms: sampled.ms, width: sampled.width, height: sampled.height },
        scaled: { ms: scaled.ms, width: scaled.width, height: scaled.height },
        scaledGap,
        full: { ms: full.ms, width: full.width, height: full.height },
        scores,
        reference,
        gap,
        n: decode.length,
      })
    }
  } finally {
    await decoder.stop()
    await server.stop()
  }
  return results
}

const chunk = (values, size) =>
  Array.from({ length: values.length / size }, (_, i) => values.slice(i * size, (i + 1) * size))

/** The report's section. */
export function phoneMarkdown(results) {
  if (!results?.length) return []
  const p = (v) => fmt(v, 3)
  return [
    '### Phone photos: 12 MP JPEGs for a 224×224 model',
    '',
    '12 MP JPEGs (4032×3024, baseline 4:2:0, mozjpeg quality 90), made by test/setup/phone-photos.ts from the fixture photographs',
    "(the 4:3 center upscaled), classified by nsfwjs's MobileNetV2 (224×224×3) with `image` preprocessing, under the default limits.",
    `**warmserve**: its Server-Timing over ${results[0].n} sequential raw-body requests to \`:classify\` (median; whole ms): \`decode\` is`,
    "decode and preprocess: the JPEG decoded at the points its resize reads. **Decode Worker**: warmserve's decodeImage +",
    `imageTensor in workerd (bench/decode-worker.ts), the mean of ${RUNS.sampled} (at points, 1/8) or ${RUNS.full} (full) runs by the isolate's`,
    "clock: the decode at the points (the served path), the 1/8 DCT-scaled one (the path before) and mozjpeg's full decode",
    "(limits raised for it: the defaults refuse 12 MP whole). Scores: warmserve's answer against the same model fed the full",
    "decode's preprocessed row; the gap is the largest difference of the five classes' scores (target ≤ 0.02).",
    '',
    "| photo | bytes | warmserve decode + preprocess p50 ms (target ≤ 60) | infer p50 ms | decode Worker: at the points (pixels kept) ms | 1/8 ms | full decode ms | speed-up (full ÷ points) | warmserve's scores | full decode's scores | gap | gap at 1/8 |",
    '|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|',
    ...results.map(
      (r) =>
        `| ${r.name} | ${r.bytes} | ${r.decode} | ${r.infer} | ${fmt(r.sampled.ms, 1)} (${r.sampled.width}×${r.sampled.height}) | ${fmt(r.scaled.ms, 1)} | ${fmt(r.full.ms, 0)} (${r.full.width}×${r.full.height}) | ${fmt(r.full.ms / r.sampled.ms, 1)}× | ${r.scores.map(p).join(' · ')} | ${r.reference.map(p).join(' · ')} | ${r.gap.toFixed(3)} | ${r.scaledGap.toFixed(3)} |`,
    ),
    '',
    "At the points, the pixels are mozjpeg's within its integer IDCT's rounding (≤ 3 levels on 1–2% of values), so the answer is",
    "the full decode's. The 1/8 decode it replaced averaged 8×8 where the resize reads 2×2 of every 18×18, and moved nsfwjs's",
    'scores for the rocket and the cameraman by about 0.1 (test/images-scaled.test.ts). See docs/images.md, "Phone photos".',
    '',
  ]
}

/** Replaces (or adds) the phone-photo section of the report `file`, between the markers. */
export function writePhoneSection(file, results) {
  const section = `${PHONE_BEGIN}\n${phoneMarkdown(results).join('\n')}\n${PHONE_END}`
  const old = existsSync(file) ? readFileSync(file, 'utf8') : ''
  const at = old.indexOf(PHONE_BEGIN)
  const end = old.indexOf(PHONE_END)
  writeFileSync(
    file,
    at >= 0 && end > at
      ? `${old.slice(0, at)}${section}${old.slice(end + PHONE_END.length)}`
      : `${old.trimEnd()}\n\n${section}\n`,
  )
}
