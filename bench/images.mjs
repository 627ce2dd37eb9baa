/**
 * The image path in `npm run bench`: a real photograph (scikit-image's chelsea, CC0) as a 640×480
 * JPEG sent as is to `:classify` on a copy of the image model configured as an image classifier,
 * against the same model fed the float tensor (v2 JSON and binary, measured by run.mjs beside it).
 * The Worker's own times come from its Server-Timing: `decode` (decode the JPEG, resize, normalize)
 * and `infer`.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import jpeg from 'jpeg-js'
import { ROOT } from '../scripts/tools/launch.mjs'
import { CLASSES, IMAGE_MODEL, IMAGE_SIZE } from '../scripts/dev/build-image-model.mjs'
import { fmt, inWorker, ratio } from './format.mjs'

/** The image model's copy with `image` preprocessing, labels and `classify` in its config.json. */
export const PHOTO_MODEL = `${IMAGE_MODEL}-photo`
const PHOTO = { file: 'test/fixtures/models/_images/chelsea.jpg', width: 640, height: 480, quality: 90 }
/** Sequential requests whose Server-Timing gives the decode and inference times. */
const TIMED_REQUESTS = 60

/** Serves the image model again as PHOTO_MODEL, configured as users configure an image classifier. */
export function addPhotoModel(assetsDir) {
  cpSync(join(assetsDir, IMAGE_MODEL), join(assetsDir, PHOTO_MODEL), { recursive: true })
  const config = {
    inputs: { image: { image: { size: [IMAGE_SIZE, IMAGE_SIZE], channels: 3, range: [0, 1] } } },
    labels: Array.from({ length: CLASSES }, (_, i) => `class ${i}`),
    classify: { top_k: 5, activation: 'none' },
  }
  writeFileSync(join(assetsDir, PHOTO_MODEL, 'config.json'), `${JSON.stringify(config, null, 2)}\n`)
}

/** The photo as a 640×480 JPEG: decoded, resized with tf.image.resizeBilinear, encoded again. */
export async function photoJpeg() {
  await tf.setBackend('cpu')
  const source = jpeg.decode(readFileSync(join(ROOT, PHOTO.file)), { useTArray: true, formatAsRGBA: true })
  const resized = tf.tidy(() => {
    const rgba = tf.tensor3d(source.data, [source.height, source.width, 4], 'float32')
    return tf.cast(
      tf.clipByValue(tf.round(tf.image.resizeBilinear(rgba, [PHOTO.height, PHOTO.width])), 0, 255),
      'int32',
    )
  })
  const data = Buffer.from(await resized.data())
  resized.dispose()
  return jpeg.encode({ data, width: PHOTO.width, height: PHOTO.height }, PHOTO.quality).data
}

/** `name;dur=X` entries of a Server-Timing header. */
const timings = (header) =>
  Object.fromEntries([...(header ?? '').matchAll(/(\w+);dur=([\d.]+)/g)].map(([, name, ms]) => [name, Number(ms)]))
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]

/**
 * The photo to PHOTO_MODEL's `:classify` on `server`: the Worker's decode and inference times from
 * TIMED_REQUESTS sequential requests, then `measure(server, url, c, init, label)` cells at 1 and 8
 * connections (run.mjs's `measured`).
 */
export async function imagePath(server, measure) {
  const body = await photoJpeg()
  const url = `${server.url}/v1/models/${PHOTO_MODEL}:classify`
  const init = { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body }
  const decode = []
  const infer = []
  let answer
  for (let i = 0; i < TIMED_REQUESTS + 1; i++) {
    const response = await fetch(url, { ...init, signal: AbortSignal.timeout(60_000) })
    const text = await response.text()
    if (response.status !== 200)
      throw new Error(`:classify on ${PHOTO_MODEL} with a JPEG answered ${response.status}: ${text.slice(0, 500)}`)
    answer = JSON.parse(text)
    const t = timings(response.headers.get('server-timing'))
    if (i === 0) continue // the load
    decode.push(t.decode)
    infer.push(t.infer)
  }
  decode.sort((a, b) => a - b)
  infer.sort((a, b) => a - b)
  const cells = []
  for (const c of [1, 8])
    cells.push({ c, ...(await measure(server, url, c, init, `:classify ${PHOTO_MODEL} JPEG 640×480 worker/wasm`)) })
  return {
    bytes: body.length,
    width: PHOTO.width,
    height: PHOTO.height,
    top: answer[0],
    decode: { p50: percentile(decode, 0.5), p90: percentile(decode, 0.9), n: decode.length },
    infer: { p50: percentile(infer, 0.5), p90: percentile(infer, 0.9), n: infer.length },
    cells,
  }
}

/** The report's section: the photo's decode and classify times against the float tensor bodies. */
export function imagePathMarkdown(photo, binary) {
  if (!photo) return []
  const lines = [
    '### Images in: a JPEG photo against float tensors',
    '',
    `A ${photo.width}×${photo.height} JPEG of a photograph (scikit-image's chelsea, resized; ${photo.bytes} bytes) sent as is to`,
    `\`POST /v1/models/${PHOTO_MODEL}:classify\` — the same ${IMAGE_SIZE}×${IMAGE_SIZE}×3 model as above, with \`image\` preprocessing`,
    'and labels in its config.json — against the same model fed the float tensor as v2 JSON and binary (above).',
    '',
    `**In the Worker** (its Server-Timing, median of ${photo.decode.n} sequential requests, ms resolution): decode and`,
    `preprocess (JPEG → RGBA → resize to ${IMAGE_SIZE}×${IMAGE_SIZE} → normalize) **${fmt(photo.decode.p50, 0)} ms** (p90 ${fmt(photo.decode.p90, 0)}),`,
    `inference ${fmt(photo.infer.p50, 0)} ms (p90 ${fmt(photo.infer.p90, 0)}).`,
    '',
    '| body | request bytes | conc. | p50 ms | p99 ms | req/s | in-Worker p50 / p99 ms | p50 ÷ binary |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  const row = (name, size, r, base) =>
    `| ${name} | ${size} | ${r.c} | ${fmt(r.p50, 0)} | ${fmt(r.p99, 0)} | ${fmt(r.rps)} | ${inWorker(r)} | ${ratio(r.p50, base?.p50, 2)} |`
  for (const c of [1, 8]) {
    const bin = binary?.cells.find((x) => x.kind === 'binary' && x.c === c)
    const json = binary?.cells.find((x) => x.kind === 'json' && x.c === c)
    const jpegCell = photo.cells.find((x) => x.c === c)
    if (jpegCell) lines.push(row('JPEG to `:classify` (labels out)', photo.bytes, jpegCell, bin))
    if (json) lines.push(row('float JSON to v2 infer', binary.jsonBytes, json, bin))
    if (bin) lines.push(row('float binary to v2 infer', binary.binaryBytes, bin, bin))
  }
  lines.push('')
  return lines
}
