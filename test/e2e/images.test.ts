/**
 * Images in, labels out through workerd (the deploy bundle in Miniflare): real photographs nobody on this project made
 * (scikit-image's sample data: chelsea and camera CC0, rocket public domain) sent to real image
 * classifiers nobody on this project trained (@vladmandic/human's emotion model, grayscale 64×64, and
 * its liveness model, RGB 32×32), compared with tf.js's own pipeline in this process: an independent
 * decoder (pngjs, jpeg-js), `tf.image.resizeBilinear`, the same normalization, the model, the ranking.
 * A model that returns its input (`pixels`) shows the exact tensor the Worker made. The repository:
 * test/e2e/support/image-models.ts.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import * as tfconv from '@tensorflow/tfjs-converter'
import jpeg from 'jpeg-js'
import { PNG } from 'pngjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sharedFixtureServer } from './support/servers'
import type { SharedServer } from './support/servers'
import { post } from './support/http'
import { HUMAN, LIVENESS_LABELS, MODELS, PHOTOS, PIXELS } from './support/image-models'
import type { Image } from './support/image-models'
import { readArtifacts } from './support/models'

const PHOTO_FILES = ['chelsea.png', 'camera.png', 'rocket.jpg', 'chelsea.jpg'] as const
const TYPES: Record<string, string> = { png: 'image/png', jpg: 'image/jpeg' }

const decoded = new Map<string, { width: number; height: number; rgba: Uint8Array }>()
/** RGBA pixels by an independent decoder: pngjs for PNG, jpeg-js for JPEG; each photo decoded once. */
function decodeReference(file: string): { width: number; height: number; rgba: Uint8Array } {
  let image = decoded.get(file)
  if (!image) decoded.set(file, (image = decodeFile(file)))
  return image
}

function decodeFile(file: string): { width: number; height: number; rgba: Uint8Array } {
  const bytes = readFileSync(join(PHOTOS, file))
  if (file.endsWith('.png')) {
    const png = PNG.sync.read(bytes)
    return { width: png.width, height: png.height, rgba: new Uint8Array(png.data) }
  }
  const decoded = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true })
  return { width: decoded.width, height: decoded.height, rgba: decoded.data }
}

/** The reference preprocessing in this process: RGB, a centered crop if asked, then tf.js's resizeBilinear, luma, range, mean and std. */
function referenceTensor(file: string, image: Image): tf.Tensor4D {
  const { width, height, rgba } = decodeReference(file)
  // The crop's window, or the whole image.
  let [top, left, rows, cols] = [0, 0, height, width]
  if (image.fit === 'center-crop') {
    const [h, w] = image.size
    ;[rows, cols] =
      width * h > height * w ? [height, Math.round((height * w) / h)] : [Math.round((width * h) / w), width]
    ;[top, left] = [Math.floor((height - rows) / 2), Math.floor((width - cols) / 2)]
  }
  // RGB of the window, copied in a plain loop: the cpu backend's tf.slice takes ~0.4 s on a photo.
  const rgb = new Float32Array(rows * cols * 3)
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const from = ((top + r) * width + left + c) * 4
      const to = (r * cols + c) * 3
      rgb[to] = rgba[from]!
      rgb[to + 1] = rgba[from + 1]!
      rgb[to + 2] = rgba[from + 2]!
    }
  }
  return tf.tidy(() => {
    let y: tf.Tensor3D = tf.image.resizeBilinear(tf.tensor3d(rgb, [rows, cols, 3]), image.size)
    if (image.channels === 1) y = tf.image.rgbToGrayscale(y)
    const [low, high] = image.range
    y = tf.add(tf.mul(tf.div(y, 255), high - low), low)
    if (image.mean) y = tf.sub(y, image.mean)
    if (image.std) y = tf.div(y, image.std)
    return tf.expandDims(y, 0) as tf.Tensor4D
  })
}

const graphs = new Map<keyof typeof MODELS, Promise<tfconv.GraphModel>>()
/** Each model loaded once, for the file's tests. */
function graphOf(name: keyof typeof MODELS): Promise<tfconv.GraphModel> {
  let graph = graphs.get(name)
  if (!graph)
    graphs.set(name, (graph = tfconv.loadGraphModel(tf.io.fromMemory(readArtifacts(join(HUMAN, MODELS[name].source))))))
  return graph
}

/** tf.js's ranking of the model's scores for one photo, as `[label, score]` best first. */
async function referenceRanking(name: keyof typeof MODELS, file: string): Promise<[string, number][]> {
  const model = MODELS[name]
  const graph = await graphOf(name)
  const image = Object.values(model.config.inputs)[0]!.image as Image
  const x = referenceTensor(file, image)
  const y = graph.predict(x) as tf.Tensor
  const scores = model.config.classify.activation === 'softmax' ? tf.softmax(y as tf.Tensor2D) : y
  const values = Array.from(await scores.data())
  tf.dispose([x, y, scores])
  const labels = Array.isArray(model.config.labels) ? model.config.labels : LIVENESS_LABELS.trim().split('\n')
  return values.map((v, i): [string, number] => [labels[i]!, v]).sort((a, b) => b[1] - a[1])
}

let server: SharedServer | undefined

beforeAll(async () => {
  server = await sharedFixtureServer()
})
afterAll(async () => {
  for (const graph of graphs.values()) (await graph).dispose()
})

const bytesOf = (file: string) => readFileSync(join(PHOTOS, file))
const typeOf = (file: string) => TYPES[file.split('.').pop()!]!

describe('real photographs to real image classifiers, equal to tf.js in Node', () => {
  for (const name of Object.keys(MODELS) as (keyof typeof MODELS)[]) {
    for (const file of PHOTO_FILES) {
      it(`${name} classifies ${file} as tf.js does: same top-1, scores within 0.02`, async () => {
        const res = await fetch(`${server!.url}/v1/models/${name}:classify?top_k=10`, {
          method: 'POST',
          body: bytesOf(file),
          headers: { 'content-type': typeOf(file) },
        })
        const text = await res.text()
        expect(res.status, text).toBe(200)
        const got = JSON.parse(text) as { label: string; score: number }[]
        const want = await referenceRanking(name, file)
        expect(got[0]!.label).toBe(want[0]![0])
        const diffs = want.map(([label, score]) => Math.abs(got.find((g) => g.label === label)!.score - score))
        console.log(
          `[images] ${name} ${file}: top-1 ${got[0]!.label} ${got[0]!.score.toFixed(4)} (tf.js ${want[0]![1].toFixed(4)}), max score difference ${Math.max(...diffs).toExponential(2)}`,
        )
        expect(Math.max(...diffs)).toBeLessThanOrEqual(0.02)
      })
    }
  }
})

describe('the input tensor equals tf.js preprocessing', () => {
  const pixels = async (file: string) => {
    const res = await post<{ predictions: number[][] }>(`${server!.url}/v1/models/pixels:predict`, {
      instances: [{ b64: bytesOf(file).toString('base64') }],
    })
    expect(res.status, res.text).toBe(200)
    return res.json.predictions[0]!
  }
  const reference = (file: string) => {
    const x = referenceTensor(file, PIXELS)
    const values = Array.from(x.dataSync())
    x.dispose()
    return values
  }

  for (const file of ['chelsea.png', 'camera.png']) {
    it(`PNG ${file}: within 1e-5 per value`, async () => {
      const [got, want] = [await pixels(file), reference(file)]
      // Values are in ImageNet-normalized units (÷ std ≈ 0.22): 1e-5 there is finer than 1e-5 of [0, 1].
      const max = got.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i]!)), 0)
      console.log(`[images] pixels ${file}: max difference ${max.toExponential(2)}`)
      expect(max).toBeLessThanOrEqual(1e-5)
    })
  }

  for (const file of ['rocket.jpg', 'chelsea.jpg']) {
    it(`JPEG ${file}: mean absolute difference within 2/255`, async () => {
      const [got, want] = [await pixels(file), reference(file)]
      // Back to [0, 1] units: × std per channel.
      const std = PIXELS.std!
      const mean = got.reduce((s, v, i) => s + Math.abs(v - want[i]!) * std[i % 3]!, 0) / got.length
      console.log(`[images] pixels ${file}: mean absolute difference ${(mean * 255).toFixed(3)}/255`)
      expect(mean).toBeLessThanOrEqual(2 / 255)
    })
  }
})
