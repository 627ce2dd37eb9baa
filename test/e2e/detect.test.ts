/**
 * Photos in, labelled boxes out, through workerd (the deploy bundle in Miniflare): real photographs
 * (scikit-image's sample data) sent to real detectors nobody on this project trained (@vladmandic/human's CenterNet, one
 * `[1, 100, 6]` output of rows; its handtrack, a TensorFlow Object Detection API export with separate
 * boxes, scores, classes and count) and to a YOLO-shaped model built by the fixture (transposed
 * `[1, 7, 64]` rows, NCHW input), each answer compared with a reference computed here with tf.js on
 * the same wasm backend: an independent PNG decoder (pngjs), `tf.image.resizeBilinear`, the model,
 * then the rows decoded and `tf.image.nonMaxSuppression` run per class. The repository:
 * test/e2e/detect-models.ts.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { request } from 'node:http'
import { dirname, join } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm'
import * as tfconv from '@tensorflow/tfjs-converter'
import type * as tfl from '@tensorflow/tfjs-layers'
import { PNG } from 'pngjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT } from '../../scripts/tools/launch.mjs'
import { cocoLabels, DETECTORS, HUMAN_MODELS, yoloModel } from './support/detect-models'
import type { DetectorName } from './support/detect-models'
import { ARTIFACTS, chromiumAvailable, openChromium } from './support/chromium'
import { post } from './support/http'
import { PHOTOS } from './support/image-models'
import { readArtifacts } from './support/models'
import { ownServer, sharedChromium } from './support/servers'
import type { SharedServer } from './support/servers'

/** scikit-image's samples, where python3-skimage is installed: more photos with people, a cup, a motorcycle. */
const SKIMAGE = '/usr/lib/python3/dist-packages/skimage/data'
const PHOTO_FILES = [
  join(PHOTOS, 'chelsea.png'),
  join(PHOTOS, 'camera.png'),
  ...['astronaut.png', 'coffee.png', 'motorcycle_left.png']
    .map((f) => join(SKIMAGE, f))
    .filter((path) => existsSync(path)),
]

type Box = { xmin: number; ymin: number; xmax: number; ymax: number }
type Detection = { label: string; score: number; box: Box }
type Config = (typeof DETECTORS)[DetectorName]
type ImageConfig = { size: readonly [number, number]; range: readonly [number, number]; fit?: string; layout?: string }

const imageOf = (config: Config) => Object.values(config.inputs)[0]!.image as ImageConfig
const labelsOf = (name: DetectorName): readonly string[] =>
  name === 'centernet' ? cocoLabels() : (DETECTORS[name].labels as readonly string[])

const decodedPhotos = new Map<string, { width: number; height: number; rgba: Uint8Array }>()
function decodePhoto(path: string) {
  let photo = decodedPhotos.get(path)
  if (!photo) {
    const png = PNG.sync.read(readFileSync(path))
    decodedPhotos.set(path, (photo = { width: png.width, height: png.height, rgba: new Uint8Array(png.data) }))
  }
  return photo
}

/** The window of the photo the model sees: a centered crop with the input's aspect ratio, or all of it. */
function windowOf(width: number, height: number, image: ImageConfig) {
  if (image.fit !== 'center-crop') return { top: 0, left: 0, rows: height, cols: width }
  const [h, w] = image.size
  const [rows, cols] =
    width * h > height * w ? [height, Math.round((height * w) / h)] : [Math.round((width * h) / w), width]
  return { top: Math.floor((height - rows) / 2), left: Math.floor((width - cols) / 2), rows, cols }
}

/**
 * The RGB of a photo's window, made once: CenterNet, handtrack and yolo-tiny all see the whole photo
 * (only their sizes differ), so three of its four detectors resize the same pixels.
 */
const windowPixels = new Map<string, Float32Array>()
function rgbOf(path: string, image: ImageConfig) {
  const { width, height, rgba } = decodePhoto(path)
  const { top, left, rows, cols } = windowOf(width, height, image)
  const key = `${path} ${top} ${left} ${rows} ${cols}`
  let rgb = windowPixels.get(key)
  if (!rgb) {
    rgb = new Float32Array(rows * cols * 3)
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        for (let k = 0; k < 3; k++) rgb[(r * cols + c) * 3 + k] = rgba[((top + r) * width + left + c) * 4 + k]!
      }
    }
    windowPixels.set(key, rgb)
  }
  return { rgb, rows, cols }
}

/**
 * The model's input for a photo, made here: RGB of the window, resizeBilinear, the range, int32
 * rounded if asked, NCHW if asked. On the cpu backend: its resizeBilinear computes TensorFlow's
 * arithmetic in double precision, while the wasm kernel's float32 positions shift values by up to
 * 1e-3, enough to round some pixels of a uint8 input the other way.
 */
async function referenceInput(path: string, image: ImageConfig, dtype: 'float32' | 'int32'): Promise<tf.Tensor4D> {
  const { rgb, rows, cols } = rgbOf(path, image)
  await tf.setBackend('cpu')
  const made = tf.tidy(() => {
    const resized = tf.image.resizeBilinear(tf.tensor3d(rgb, [rows, cols, 3]), [...image.size] as [number, number])
    // The range: what tf.add(tf.mul(tf.div(y, 255), high - low), low) computes on the cpu backend (each
    // op in double precision, its result stored as float32, the scalars float32), in one pass here
    // rather than three kernels over the whole input (0.5–0.8 CPU-s of the file's 21 references).
    const [low, high] = image.range
    const [scale, offset] = [Math.fround(high - low), Math.fround(low)]
    const pixels = resized.dataSync()
    const ranged = new Float32Array(pixels.length)
    for (let i = 0; i < pixels.length; i++) ranged[i] = Math.fround(Math.fround(pixels[i]! / 255) * scale) + offset
    let y: tf.Tensor = tf.tensor(ranged, resized.shape, 'float32')
    if (dtype === 'int32') y = tf.cast(tf.round(y), 'int32')
    if (image.layout === 'nchw') y = tf.transpose(y, [2, 0, 1])
    return tf.expandDims(y, 0)
  })
  const [values, shape] = [made.dataSync().slice(), made.shape]
  made.dispose()
  await tf.setBackend('wasm')
  return tf.tensor4d(values, shape as [number, number, number, number], dtype)
}

/** The outputs of handtrack the reference reads: its raw boxes and per-class scores (as its detect block does). */
const HANDTRACK_OUTPUTS = ['Identity_6:0', 'Identity_7:0']

/** A candidate row: corners in input pixels, y1 x1 y2 x2 as tf.image.nonMaxSuppression takes them. */
type Row = { yxyx: [number, number, number, number]; score: number; cls: number }

/** The rows of each model's outputs, decoded here from the tensors as the model's authors document them. */
async function referenceRows(name: DetectorName, x: tf.Tensor4D): Promise<Row[]> {
  const [inH, inW] = imageOf(DETECTORS[name]).size
  // The outputs' values as they lie ([1, N, K] row after row), read by index rather than made into nested arrays.
  if (name === 'centernet') {
    const y = (await graph('centernet')).execute(x, 'tower_0/detections') as tf.Tensor
    const [, count, width] = y.shape as [number, number, number]
    const v = await y.data()
    y.dispose()
    // x1, y1, x2, y2 in input pixels, score, class (0-based into COCO's 80).
    return Array.from({ length: count }, (_, i) => {
      const r = i * width
      return { yxyx: [v[r + 1]!, v[r]!, v[r + 3]!, v[r + 2]!], score: v[r + 4]!, cls: Math.round(v[r + 5]!) }
    })
  }
  if (name === 'handtrack') {
    const outputs = (await (await graph('handtrack')).executeAsync(x, HANDTRACK_OUTPUTS)) as tf.Tensor[]
    const width = outputs[1]!.shape[2]!
    const [boxes, scores] = await Promise.all(outputs.map((t) => t.data()))
    tf.dispose(outputs)
    // Normalized y1, x1, y2, x2; scores per class after the background's column 0 (the first best one).
    return Array.from({ length: outputs[0]!.shape[1]! }, (_, i) => {
      const [b, s] = [i * 4, i * width]
      let best = 1
      for (let k = 2; k < width; k++) if (scores![s + k]! > scores![s + best]!) best = k
      return {
        yxyx: [boxes![b]! * inH, boxes![b + 1]! * inW, boxes![b + 2]! * inH, boxes![b + 3]! * inW],
        score: scores![s + best]!,
        cls: best - 1,
      }
    })
  }
  // The YOLO-shaped model: [1, 7, 64] → rows of cx, cy, w, h (normalized), then scores.
  const y = (yolo ??= yoloModel()).predict(x) as tf.Tensor
  const rows = tf.tidy(() => tf.transpose(y, [0, 2, 1]).arraySync() as number[][][])[0]!
  y.dispose()
  return rows.map((r) => {
    const [cx, cy, w, h] = [r[0]! * inW, r[1]! * inH, r[2]! * inW, r[3]! * inH]
    const yxyx: Row['yxyx'] = [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]
    const scores = name === 'yolo-tiny' ? r.slice(4) : r.slice(5).map((s) => s * r[4]!)
    const best = scores.indexOf(Math.max(...scores))
    return { yxyx, score: scores[best]!, cls: best }
  })
}

/**
 * Each row of a model's outputs for a photo, computed once: the options (thresholds, the number
 * kept) only choose among them, so a test asking other options reads the same rows.
 */
const computedRows = new Map<string, Promise<Row[]>>()
function candidates(name: DetectorName, path: string): Promise<Row[]> {
  const key = `${name} ${path}`
  let rows = computedRows.get(key)
  if (!rows) {
    rows = (async () => {
      const x = await referenceInput(path, imageOf(DETECTORS[name]), name === 'handtrack' ? 'int32' : 'float32')
      try {
        return await referenceRows(name, x)
      } finally {
        x.dispose()
      }
    })()
    computedRows.set(key, rows)
  }
  return rows
}

/** The reference answer: rows above the score threshold, tf.image.nonMaxSuppression per class (or once), best first, mapped onto the photo. */
async function referenceDetections(
  name: DetectorName,
  path: string,
  options: { score_threshold?: number; max_detections?: number } = {},
): Promise<Detection[]> {
  const config = DETECTORS[name]
  const detect = config.detect as {
    score_threshold: number
    iou_threshold: number
    max_detections: number
    class_agnostic?: boolean
  }
  const threshold = options.score_threshold ?? detect.score_threshold
  const max = options.max_detections ?? detect.max_detections
  const image = imageOf(config)
  const rows = (await candidates(name, path)).filter((r) => r.score > threshold)
  const groups = detect.class_agnostic
    ? [rows]
    : [...new Set(rows.map((r) => r.cls))].map((cls) => rows.filter((r) => r.cls === cls))
  const kept: Row[] = []
  for (const group of groups) {
    const selected = tf.tidy(() =>
      tf.image.nonMaxSuppression(
        tf.tensor2d(group.map((r) => r.yxyx)),
        tf.tensor1d(group.map((r) => r.score)),
        max,
        detect.iou_threshold,
        threshold,
      ),
    )
    for (const i of await selected.array()) kept.push(group[i]!)
    selected.dispose()
  }
  kept.sort((a, b) => b.score - a.score)
  const { width, height } = decodePhoto(path)
  const { top, left, rows: h, cols: w } = windowOf(width, height, image)
  const [sx, sy] = [w / image.size[1], h / image.size[0]]
  const clamp = (v: number, high: number) => Math.min(Math.max(v, 0), high)
  const labels = labelsOf(name)
  return kept.slice(0, max).map((r) => {
    const [y1, x1, y2, x2] = r.yxyx
    return {
      label: labels[r.cls]!,
      score: r.score,
      box: {
        xmin: clamp(left + Math.min(x1, x2) * sx, width),
        ymin: clamp(top + Math.min(y1, y2) * sy, height),
        xmax: clamp(left + Math.max(x1, x2) * sx, width),
        ymax: clamp(top + Math.max(y1, y2) * sy, height),
      },
    }
  })
}

/**
 * handtrack's two outputs read here (its raw boxes and scores) each carry a control-only input
 * (`^…/BatchMultiClassNonMaxSuppression/…/SortByField_1/Equal`), the exporter's ordering edge: tf.js
 * honours it, as TensorFlow does, so each run also computes the export's own postprocessor (7
 * NonMaxSuppressionV5 over 12804 boxes, a TopK), whose results these outputs do not take: 0.07–0.1
 * of a run's 0.2 CPU-s here. The reference's copy of the graph goes without those two edges only:
 * every node the outputs' values come from, and its weights, are the export's (the server runs the
 * graph as exported, and its answers are compared with these).
 */
function withoutControlInputs(artifacts: tf.io.ModelArtifacts, outputs: string[]): tf.io.ModelArtifacts {
  const names = new Set(outputs.map((o) => o.split(':')[0]))
  const topology = artifacts.modelTopology as { node: { name: string; input?: string[] }[] }
  const node = topology.node.map((n) =>
    names.has(n.name) ? { ...n, input: n.input?.filter((i) => !i.startsWith('^')) } : n,
  )
  return { ...artifacts, modelTopology: { ...topology, node } }
}

const graphs = new Map<string, Promise<tfconv.GraphModel>>()
const graph = (name: 'centernet' | 'handtrack') => {
  let model = graphs.get(name)
  if (!model) {
    const artifacts = readArtifacts(join(HUMAN_MODELS, `${name}.json`))
    const read = name === 'handtrack' ? withoutControlInputs(artifacts, HANDTRACK_OUTPUTS) : artifacts
    graphs.set(name, (model = tfconv.loadGraphModel(tf.io.fromMemory(read))))
  }
  return model
}
let yolo: tfl.LayersModel | undefined

/** Expects `got` to be `want`: the same labels in order, scores within 1e-4, box edges within 1 pixel of the model's input. */
function expectSame(name: DetectorName, path: string, got: Detection[], want: Detection[]) {
  const image = imageOf(DETECTORS[name])
  const { width, height } = decodePhoto(path)
  const { rows, cols } = windowOf(width, height, image)
  const [sx, sy] = [cols / image.size[1], rows / image.size[0]]
  expect(got.map((d) => d.label)).toEqual(want.map((d) => d.label))
  let [scoreDiff, pixelDiff] = [0, 0]
  got.forEach((d, i) => {
    const w = want[i]!
    scoreDiff = Math.max(scoreDiff, Math.abs(d.score - w.score))
    pixelDiff = Math.max(
      pixelDiff,
      Math.abs(d.box.xmin - w.box.xmin) / sx,
      Math.abs(d.box.xmax - w.box.xmax) / sx,
      Math.abs(d.box.ymin - w.box.ymin) / sy,
      Math.abs(d.box.ymax - w.box.ymax) / sy,
    )
  })
  const top = got[0] ? `${got[0].label} ${got[0].score.toFixed(3)}` : 'none'
  console.log(
    `[detect] ${name} ${path.split('/').pop()}: ${got.length} boxes (top ${top}); max score difference ${scoreDiff.toExponential(2)}, max box difference ${pixelDiff.toFixed(3)} input px`,
  )
  expect(scoreDiff).toBeLessThanOrEqual(1e-4)
  expect(pixelDiff).toBeLessThanOrEqual(1)
}

type Answer = { status: number; text: string; json: Detection[] & { error?: string } }

/**
 * POSTs a photo to `:detect` on a connection of its own. A test's reference takes seconds (CenterNet
 * on wasm in this process), about the 5 s a keep-alive connection may idle at the server (wrangler dev's
 * proxy, which served this file before, did): reused then, it can be closed by the server just as the
 * next request is sent ("other side closed").
 * `sent` resolves once the whole request is handed to the connection: a reference computed in this
 * process from then on runs while the server answers, on the other core.
 */
function sendDetect(name: string, path: string, query = ''): { sent: Promise<void>; answer: Promise<Answer> } {
  let sent!: () => void
  const whenSent = new Promise<void>((resolve) => (sent = resolve))
  const answer = new Promise<Answer>((resolve, reject) => {
    const body = readFileSync(path)
    const req = request(
      `${server.url}/v1/models/${name}:detect${query}`,
      { method: 'POST', agent: false, headers: { 'content-type': 'image/png', 'content-length': body.length } },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          resolve({ status: res.statusCode!, text, json: JSON.parse(text) as Detection[] & { error?: string } })
        })
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.on('finish', sent)
    req.end(body)
  })
  // A request that fails before it is sent fails `answer`, which its caller awaits.
  answer.catch(sent)
  return { sent: whenSent, answer }
}
const detectRaw = (name: string, path: string, query = '') => sendDetect(name, path, query).answer

/**
 * The answer to `:detect` of a photo with the model's own settings. The same request is asked by
 * several tests (CenterNet on chelsea.png by three): each model run is deterministic, so it is sent
 * once per file and its answer shared, rather than run again on the server for the same bytes.
 */
const answers = new Map<string, Promise<Answer>>()
function detected(name: string, path: string): { sent: Promise<void>; answer: Promise<Answer> } {
  const key = `${name} ${path}`
  const known = answers.get(key)
  if (known) return { sent: Promise.resolve(), answer: known }
  const sending = sendDetect(name, path)
  answers.set(key, sending.answer)
  return sending
}

let server: SharedServer

beforeAll(async () => {
  // The Worker's backend, here in Node: the same kernels, so the scores agree to float rounding.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false)
  setWasmPaths(join(ROOT, 'node_modules/@tensorflow/tfjs-backend-wasm/dist/'))
  await tf.setBackend('wasm')
  // The detectors, and the try-it page's files as the bundled repository has them (writeDetectRepository).
  server = await ownServer('detect')
})
afterAll(async () => {
  for (const model of graphs.values()) (await model).dispose()
  yolo?.dispose()
  // The e2e files share one tf.js (isolate: false); the others compute their references on the cpu backend.
  tf.removeBackend('wasm')
  if (tf.findBackendFactory('cpu')) await tf.setBackend('cpu')
})

// The try-it page first, while CenterNet is the model loaded: a photo picked in its panel comes back drawn with its boxes.
describe.skipIf(!chromiumAvailable)('the try-it page draws the boxes of a detector in Chromium', () => {
  let browser: Awaited<ReturnType<typeof openChromium>> | undefined
  afterAll(async () => {
    await browser?.close()
  })

  it('draws each box :detect answers on the picked photo, in the box color, with its label listed', async () => {
    browser = await openChromium(await sharedChromium(), ['blob:'])
    const { page } = browser
    const failed: string[] = []
    page.on('pageerror', (e) => failed.push(e.message))
    await page.goto(`${server.url}/`)
    await page.waitForSelector('body[data-images="listed"]', { timeout: 60_000 })
    const photo = join(PHOTOS, 'chelsea.png')
    const api = (await detected('centernet', photo).answer).json
    expect(api.length).toBeGreaterThan(0)
    const panel = page.locator('section.image-model[data-model="centernet"]')
    expect(await panel.getAttribute('data-task')).toBe('object-detection')
    await panel.locator('input[type="file"]').setInputFiles(photo)
    await expect
      .poll(() => panel.locator('output').innerText(), { timeout: 60_000 })
      .toBe(`${api.length} (${api[0]!.label})`)
    expect(await panel.locator('ol.boxes li').allInnerTexts()).toEqual(
      api.map((d) => expect.stringMatching(new RegExp(`^${d.label} ${d.score.toFixed(3)} at `))),
    )
    mkdirSync(ARTIFACTS, { recursive: true })
    // The detector's panel (the photo with its boxes, their list, the call) is what the screenshot is for: the whole
    // page would add the other models' panels: about 0.45 Chromium CPU-s to encode, where the panel takes 0.2.
    await panel.screenshot({ path: join(ARTIFACTS, 'try-it-detect.png') })
    // The drawing as the page shows it: the box color along the best box's right edge, and not in the middle of the box.
    const shot = PNG.sync.read(await panel.locator('canvas.detections').screenshot())
    const scale = shot.width / decodePhoto(photo).width
    const isBoxColor = (x: number, y: number) => {
      const at = (Math.round(y) * shot.width + Math.round(x)) * 4
      return shot.data[at]! > 200 && shot.data[at + 1]! < 90 && shot.data[at + 2]! > 200
    }
    const { box } = api.find((d) => d.box.xmax < decodePhoto(photo).width - 4)!
    const midY = ((box.ymin + box.ymax) / 2) * scale
    const edge = Array.from({ length: 9 }, (_, i) => box.xmax * scale - 4 + i).filter((x) => x >= 0 && x < shot.width)
    expect(edge.some((x) => isBoxColor(x, midY))).toBe(true)
    expect(isBoxColor(((box.xmin + box.xmax) / 2) * scale, midY)).toBe(false)
    expect(failed).toEqual([])
  })
})

// One model after another, each done before the next loads: the detectors do not fit the wasm heap together.
describe(':detect on real photographs equals tf.js in Node', () => {
  it('finds the cat in chelsea.png with CenterNet, its box inside the photo', async () => {
    const res = await detected('centernet', join(PHOTOS, 'chelsea.png')).answer
    expect(res.status, res.text).toBe(200)
    expect(res.json.length).toBeGreaterThan(0)
    // CenterNet takes chelsea's face for a dog or a cat; either way an animal covering most of the photo.
    expect(['cat', 'dog']).toContain(res.json[0]!.label)
    const { box } = res.json[0]!
    expect([box.xmin, box.ymin]).toEqual([expect.any(Number), expect.any(Number)])
    expect(box.xmax - box.xmin).toBeGreaterThan(451 / 2)
    for (const d of res.json)
      expect(d.box.xmin >= 0 && d.box.ymin >= 0 && d.box.xmax <= 451 && d.box.ymax <= 300).toBe(true)
  })

  for (const name of Object.keys(DETECTORS) as DetectorName[]) {
    for (const path of PHOTO_FILES) {
      it(`${name} on ${path.split('/').pop()}: same labels, boxes within 1 px of the input, scores within 1e-4`, async () => {
        // The reference is computed here while the server answers.
        const { sent, answer } = detected(name, path)
        await sent
        const want = await referenceDetections(name, path)
        const res = await answer
        expect(res.status, res.text).toBe(200)
        expectSame(name, path, res.json, want)
      })
    }
  }
})

describe(':detect requests', () => {
  const chelsea = join(PHOTOS, 'chelsea.png')
  const camera = join(PHOTOS, 'camera.png')

  it('answers TF Serving JSON of b64 images with one list per image, equal to each raw answer', async () => {
    const b64 = (path: string) => ({ b64: readFileSync(path).toString('base64') })
    const rows = await post<{ results: Detection[][] }>(`${server.url}/v1/models/yolo-tiny:detect`, {
      instances: [b64(chelsea), b64(camera)],
    })
    expect(rows.status, rows.text).toBe(200)
    expect(rows.json.results).toEqual([
      (await detected('yolo-tiny', chelsea).answer).json,
      (await detected('yolo-tiny', camera).answer).json,
    ])
    const columns = await post<{ results: Detection[][] }>(`${server.url}/v1/models/yolo-tiny/versions/1:detect`, {
      inputs: { images: [b64(camera)] },
    })
    expect(columns.json.results).toEqual([rows.json.results[1]])
  })

  it('takes score_threshold and max_detections from the query, as the reference does with them', async () => {
    const strict = await detectRaw('yolo-tiny', chelsea, '?score_threshold=0.7&max_detections=3')
    expect(strict.status, strict.text).toBe(200)
    expectSame(
      'yolo-tiny',
      chelsea,
      strict.json,
      await referenceDetections('yolo-tiny', chelsea, { score_threshold: 0.7, max_detections: 3 }),
    )
    expect(strict.json.length).toBeLessThanOrEqual(3)
    const one = await detectRaw('yolo-tiny', chelsea, '?iou_threshold=0&max_detections=1')
    expect(one.json.length).toBe(1)
  })

  it.each([
    ['?score_threshold=2', /score_threshold "2" is out of bounds: a number from 0 to 1/],
    ['?iou_threshold=-0.1', /iou_threshold "-0.1" is out of bounds/],
    ['?max_detections=0', /max_detections "0" is out of bounds: an integer from 1 to 1000/],
    ['?max_detections=2.5', /max_detections "2.5" is out of bounds/],
    ['?score_threshold=high', /score_threshold "high" is out of bounds/],
  ])('refuses %s with a 400 naming the parameter', async (query, message) => {
    const res = await detectRaw('yolo-tiny', chelsea, query)
    expect(res.status).toBe(400)
    expect(res.json.error).toMatch(message)
  })

  it('refuses :detect on a model without detect with a 400 that says what to add', async () => {
    const res = await detectRaw('human-emotion', chelsea)
    expect(res.status).toBe(400)
    expect(res.json.error).toMatch(/model 'human-emotion' has no "detect" in its config.json.*add "detect": \{"output"/)
  })

  it('answers a bad image as :classify does', async () => {
    const garbage = new Uint8Array(300).fill(7)
    const send = (path: string) =>
      fetch(`${server.url}${path}`, { method: 'POST', body: garbage, headers: { 'content-type': 'image/png' } })
    const [detected, classified] = await Promise.all([
      send('/v1/models/yolo-tiny:detect'),
      send('/v1/models/human-emotion:classify'),
    ])
    expect(detected.status).toBe(400)
    expect([detected.status, await detected.json()]).toEqual([classified.status, await classified.json()])
    const gif = await fetch(`${server.url}/v1/models/yolo-tiny:detect`, {
      method: 'POST',
      body: garbage,
      headers: { 'content-type': 'image/gif' },
    })
    expect(gif.status).toBe(415)
  })

  it('keeps v2 infer raw tensors, and says object-detection in v2 metadata', async () => {
    const meta = (await (await fetch(`${server.url}/v2/models/yolo-tiny`)).json()) as {
      parameters: { task: string; detect: { output: string } }
    }
    expect(meta.parameters).toMatchObject({
      task: 'object-detection',
      detect: { output: 'rows', columns: 'box,classes' },
    })
    const infer = await post<{ outputs: { name: string; shape: number[] }[] }>(
      `${server.url}/v2/models/yolo-tiny/infer`,
      {
        inputs: [{ name: 'images', datatype: 'BYTES', shape: [1], data: [readFileSync(chelsea).toString('base64')] }],
      },
    )
    expect(infer.status, infer.text).toBe(200)
    expect(infer.json.outputs.map((o) => [o.name, o.shape])).toEqual([['rows', [1, 7, 64]]])
  })

  it('answers Models.run(name, {image}) with the same list, the image as bytes or a number[]', async () => {
    const http = (await detected('yolo5-tiny', camera).answer).json
    const bytes = readFileSync(camera)
    const asBody = (await (
      await fetch(`${server.url}/classify/yolo5-tiny`, { method: 'POST', body: bytes })
    ).json()) as { value: Detection[] }
    expect(asBody.value).toEqual(http)
    const call = async (options?: object) =>
      (await (
        await fetch(`${server.url}/call`, {
          method: 'POST',
          body: JSON.stringify({
            method: 'run',
            args: ['yolo5-tiny', { image: Array.from(bytes) }, ...(options ? [options] : [])],
          }),
        })
      ).json()) as {
        value?: Detection[]
        error?: { message: string; status: number }
      }
    expect((await call()).value).toEqual(http)
    expect((await call({ max_detections: 1 })).value).toEqual(http.slice(0, 1))
    expect((await call({ score_threshold: 5 })).error).toMatchObject({
      status: 400,
      message: expect.stringMatching(/score_threshold 5 is out of bounds/),
    })
  })
})
