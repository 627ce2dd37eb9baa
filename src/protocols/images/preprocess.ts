/**
 * @module protocols/images/preprocess — decoded pixels to one row of a model's input, as the
 * model's `inputs.<name>.image` in config.json says.
 *
 * The resize is `tf.image.resizeBilinear`'s (align_corners and half_pixel_centers false, TensorFlow's
 * defaults), computed from the at most two rows and two columns each output pixel reads: a float
 * tensor of the whole image would be 12 bytes a pixel, 96 MB for an 8-megapixel photo, most of an
 * isolate's 128 MB. The interpolation runs in JavaScript in the kernel's own order and float32
 * rounding — top = TL + (TR − TL)·x, bottom likewise, then top + (bottom − top)·y, each step rounded
 * to float32 — so the result equals resizeBilinear of the whole image (test/images.test.ts checks it
 * against the kernel) with one output-sized array, where tf.js ops on the picked pixels held some
 * 15 copies of it at once (~45 MB of wasm heap for a 512×512 input). The rest are tf.js ops.
 */
import type { ImageTransform } from '../../repository/model-config'
import type { Pixels } from './decode'
import type { SamplePoints } from './jpeg-scaled'
import type { DType } from '../../runtime/signature'
import { tf } from '../../runtime/tf'

/** tf.image.rgbToGrayscale's weights (ITU-R BT.601 luma), applied as tf.sum(tf.mul(rgb, LUMA), -1) computes it (its einsum has no wasm kernel). */
const LUMA = [0.2989, 0.587, 0.114]

/** Where each output index samples the source: the lower and upper index and the weight of the upper, as resizeBilinear computes them. */
function samples(source: number, target: number): { low: Int32Array; high: Int32Array; frac: Float32Array } {
  const ratio = source / target
  const low = new Int32Array(target)
  const high = new Int32Array(target)
  const frac = new Float32Array(target)
  for (let i = 0; i < target; i++) {
    const at = ratio * i
    low[i] = Math.max(0, Math.floor(at))
    high[i] = Math.min(source - 1, Math.ceil(at))
    frac[i] = at - low[i]!
  }
  return { low, high, frac }
}

/**
 * Where each output index samples an image decoded at `1/scale` (`length` pixels): the point a full
 * decode's resize samples, `start + step·i` in the image as sent, in the decoded pixels, whose pixel
 * k covers sent pixels scale·k to scale·k + scale − 1 (center scale·k + (scale − 1)/2). Indices are
 * absolute (the crop's offset is in `start`).
 */
function scaledSamples(
  start: number,
  step: number,
  target: number,
  scale: number,
  length: number,
): { low: Int32Array; high: Int32Array; frac: Float32Array } {
  const low = new Int32Array(target)
  const high = new Int32Array(target)
  const frac = new Float32Array(target)
  for (let i = 0; i < target; i++) {
    const at = Math.min(length - 1, Math.max(0, (start + step * i - (scale - 1) / 2) / scale))
    low[i] = Math.floor(at)
    high[i] = Math.min(length - 1, Math.ceil(at))
    frac[i] = at - low[i]!
  }
  return { low, high, frac }
}

/** The sorted, distinct `offset + index` of every index `picked` reads. */
function readAt({ low, high }: { low: Int32Array; high: Int32Array }, offset: number): Int32Array {
  const at = new Set<number>()
  for (let i = 0; i < low.length; i++) at.add(low[i]! + offset).add(high[i]! + offset)
  return Int32Array.from(at).sort()
}

/**
 * The rows and columns of a `width × height` image that the resize to `spec.size` reads (two of
 * each for each output row and column, after the crop): a baseline JPEG is decoded at these
 * points only (jpeg-scaled.ts, decodeSampledJpeg), and imageTensor reads them as it would read the
 * full decode.
 */
export function samplePoints(width: number, height: number, spec: Pick<ImageTransform, 'fit' | 'size'>): SamplePoints {
  const region = sourceRegion(width, height, spec)
  const [outH, outW] = spec.size
  return { rows: readAt(samples(region.height, outH), region.y), cols: readAt(samples(region.width, outW), region.x) }
}

/** `picked`'s indices (absolute: `offset` added) as places in `at`, the points a sampled decode kept. */
function placesIn(
  picked: { low: Int32Array; high: Int32Array; frac: Float32Array },
  offset: number,
  at: Int32Array,
): { low: Int32Array; high: Int32Array; frac: Float32Array } {
  const place = (index: number) => {
    let [lo, hi] = [0, at.length - 1]
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (at[mid]! < index) lo = mid + 1
      else hi = mid
    }
    if (at[lo] !== index) throw new Error(`the sampled decode lacks pixel ${index} the resize reads`)
    return lo
  }
  return {
    low: picked.low.map((i) => place(i + offset)),
    high: picked.high.map((i) => place(i + offset)),
    frac: picked.frac,
  }
}

/** The centered region of `width × height` with the aspect ratio of `size` ([height, width]), whole pixels. */
export function centerCrop(
  width: number,
  height: number,
  [h, w]: readonly [number, number],
): { x: number; y: number; width: number; height: number } {
  if (width * h > height * w) {
    const cropWidth = Math.max(1, Math.round((height * w) / h))
    return { x: Math.floor((width - cropWidth) / 2), y: 0, width: cropWidth, height }
  }
  const cropHeight = Math.max(1, Math.round((width * h) / w))
  return { x: 0, y: Math.floor((height - cropHeight) / 2), width, height: cropHeight }
}

/** The part of a `width × height` image that the transform resizes to its input: the centered crop, or the whole image. */
export function sourceRegion(
  width: number,
  height: number,
  spec: Pick<ImageTransform, 'fit' | 'size'>,
): { x: number; y: number; width: number; height: number } {
  return spec.fit === 'center-crop' ? centerCrop(width, height, spec.size) : { x: 0, y: 0, width, height }
}

/** The shape of `rows` images as the model's input: `[rows, h, w, c]`, or `[rows, c, h, w]` for `layout: nchw`. */
export function imageShape(spec: ImageTransform, rows: number): [number, number, number, number] {
  const [h, w] = spec.size
  return spec.layout === 'nchw' ? [rows, spec.channels, h, w] : [rows, h, w, spec.channels]
}

/**
 * One image as a `[1, h, w, c]` tensor of `dtype` (`[1, c, h, w]` for `layout: nchw`): cropped
 * (`center-crop`) or not, resized to `size`, RGB or luma, 0–255 mapped onto `range`, then
 * `(v − mean) / std`. int32 gets the values rounded.
 */
export function imageTensor(pixels: Pixels, spec: ImageTransform, dtype: DType): tf.Tensor4D {
  const values = dtype === 'int32' ? new Int32Array(rowLength(spec)) : new Float32Array(rowLength(spec))
  imageValues(pixels, spec, values)
  return tf.tensor4d(values, imageShape(spec, 1), dtype === 'int32' ? 'int32' : 'float32')
}

/** The values in one image row of the input. */
export const rowLength = (spec: ImageTransform): number => spec.size[0] * spec.size[1] * spec.channels

/** Rounds half to even, as tf.round (and TensorFlow) does. */
function roundHalfEven(v: number): number {
  const r = Math.round(v)
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r
}

/**
 * Writes one image's values into `out` from `offset` (imageTensor's, in its layout): every step in
 * JavaScript, in float32 as tf.js's kernels compute it, each operation rounded (Math.fround), so that
 * the only tensor made is the input itself. The steps as tf.js ops made a tensor of the input's size
 * each on the wasm heap while the model was resident there: centernet's heap grew by 16.8 MB on its
 * first photo, and not at all on a tensor of zeros of the same size (docs/memory.md).
 */
export function imageValues(pixels: Pixels, spec: ImageTransform, out: Float32Array | Int32Array, offset = 0): void {
  const [outH, outW] = spec.size
  let region = sourceRegion(pixels.width, pixels.height, spec)
  let rows = samples(region.height, outH)
  let cols = samples(region.width, outW)
  if (pixels.points) {
    // Decoded at the resize's points only (a JPEG, decode.ts): the same pixels, kept closer together.
    const sent = sourceRegion(pixels.source!.width, pixels.source!.height, spec)
    rows = placesIn(samples(sent.height, outH), sent.y, pixels.points.rows)
    cols = placesIn(samples(sent.width, outW), sent.x, pixels.points.cols)
    region = { x: 0, y: 0, width: pixels.width, height: pixels.height }
  } else if (pixels.source) {
    // Decoded at a reduced scale (a JPEG, decode.ts): the same points of the photo as a full decode's resize.
    const { width, height, scale } = pixels.source
    const sent = sourceRegion(width, height, spec)
    rows = scaledSamples(sent.y, sent.height / outH, outH, scale, pixels.height)
    cols = scaledSamples(sent.x, sent.width / outW, outW, scale, pixels.width)
    region = { x: 0, y: 0, width: pixels.width, height: pixels.height }
  }
  // The interpolation, in float32 as the kernel computes it: each operation rounded (Math.fround),
  // top = TL + (TR − TL)·x, bottom likewise, then top + (bottom − top)·y.
  const resized = new Float32Array(outH * outW * 3)
  const { rgba, width } = pixels
  const f = Math.fround
  for (let r = 0; r < outH; r++) {
    const lowRow = (region.y + rows.low[r]!) * width + region.x
    const highRow = (region.y + rows.high[r]!) * width + region.x
    const y = rows.frac[r]!
    for (let c = 0; c < outW; c++) {
      const x = cols.frac[c]!
      // Four locals, not a destructured array: one array and its iterator a pixel, where the loop runs
      // before the optimizer takes it, were ~10 MB of V8's heap an image (sampled).
      const tl = (lowRow + cols.low[c]!) * 4
      const tr = (lowRow + cols.high[c]!) * 4
      const bl = (highRow + cols.low[c]!) * 4
      const br = (highRow + cols.high[c]!) * 4
      for (let k = 0; k < 3; k++) {
        const top = f(rgba[tl + k]! + f((rgba[tr + k]! - rgba[tl + k]!) * x))
        const bottom = f(rgba[bl + k]! + f((rgba[br + k]! - rgba[bl + k]!) * x))
        resized[(r * outW + c) * 3 + k] = f(top + f(f(bottom - top) * y))
      }
    }
  }
  // Luma as tf.sum(tf.mul(rgb, LUMA), -1) computes it: the products, summed left to right; then the range,
  // the mean and the std per channel, as tf.mul/add/sub/div with float32 operands; int32 rounded half to even.
  const channels = spec.channels
  const luma = LUMA.map(f)
  const [low, high] = spec.range
  const scale = f((high - low) / 255)
  const shift = f(low)
  const mean = spec.mean?.map(f)
  const std = spec.std?.map(f)
  const int32 = out instanceof Int32Array
  const pixelsOut = outH * outW
  const nchw = spec.layout === 'nchw'
  for (let i = 0; i < pixelsOut; i++) {
    for (let k = 0; k < channels; k++) {
      let v =
        channels === 1
          ? f(f(f(resized[i * 3]! * luma[0]!) + f(resized[i * 3 + 1]! * luma[1]!)) + f(resized[i * 3 + 2]! * luma[2]!))
          : resized[i * 3 + k]!
      v = f(f(v * scale) + shift)
      if (mean) v = f(v - mean[k]!)
      if (std) v = f(v / std[k]!)
      out[offset + (nchw ? k * pixelsOut + i : i * channels + k)] = int32 ? roundHalfEven(v) : v
    }
  }
}
