/**
 * @module protocols/images/preprocess — decoded pixels to one row of a model's input, as the
 * model's `inputs.<name>.image` in config.json says.
 *
 * The resize is `tf.image.resizeBilinear`'s (align_corners and half_pixel_centers false, TensorFlow's
 * defaults), computed from the at most two rows and two columns each output pixel reads: a float
 * tensor of the whole image would be 12 bytes a pixel, 96 MB for an 8-megapixel photo, most of an
 * isolate's 128 MB. The few source pixels are picked out in JavaScript (no arithmetic), and the
 * interpolation runs as tf.js ops in the kernel's own order — top = TL + (TR − TL)·x, bottom likewise,
 * then top + (bottom − top)·y — so the result equals resizeBilinear of the whole image
 * (test/images.test.ts checks it against the kernel). The rest are tf.js ops too.
 */
import type { ImageTransform } from '../../repository/model-config'
import type { Pixels } from './decode'
import type { DType } from '../../runtime/signature'
import { tf } from '../../runtime/tf'

/** tf.image.rgbToGrayscale's weights (ITU-R BT.601 luma); its einsum has no wasm kernel, so a multiply and sum apply them. */
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

/** The centered region of `width × height` with the aspect ratio of `size` ([height, width]), whole pixels. */
export function centerCrop(width: number, height: number, [h, w]: readonly [number, number]): { x: number; y: number; width: number; height: number } {
  if (width * h > height * w) {
    const cropWidth = Math.max(1, Math.round((height * w) / h))
    return { x: Math.floor((width - cropWidth) / 2), y: 0, width: cropWidth, height }
  }
  const cropHeight = Math.max(1, Math.round((width * h) / w))
  return { x: 0, y: Math.floor((height - cropHeight) / 2), width, height: cropHeight }
}

/** The part of a `width × height` image that the transform resizes to its input: the centered crop, or the whole image. */
export function sourceRegion(width: number, height: number, spec: Pick<ImageTransform, 'fit' | 'size'>): { x: number; y: number; width: number; height: number } {
  return spec.fit === 'center-crop' ? centerCrop(width, height, spec.size) : { x: 0, y: 0, width, height }
}

/**
 * One image as a `[1, h, w, c]` tensor of `dtype` (`[1, c, h, w]` for `layout: nchw`): cropped
 * (`center-crop`) or not, resized to `size`, RGB or luma, 0–255 mapped onto `range`, then
 * `(v − mean) / std`. int32 gets the values rounded.
 */
export function imageTensor(pixels: Pixels, spec: ImageTransform, dtype: DType): tf.Tensor4D {
  const [outH, outW] = spec.size
  const region = sourceRegion(pixels.width, pixels.height, spec)
  const rows = samples(region.height, outH)
  const cols = samples(region.width, outW)
  // The source pixels the output reads: rows low then high, columns low then high, RGB as floats.
  const picked = new Float32Array(2 * outH * 2 * outW * 3)
  const { rgba, width } = pixels
  let k = 0
  for (const sourceRows of [rows.low, rows.high]) {
    for (let r = 0; r < outH; r++) {
      const rowStart = (region.y + sourceRows[r]!) * width + region.x
      for (const sourceCols of [cols.low, cols.high]) {
        for (let c = 0; c < outW; c++) {
          const at = (rowStart + sourceCols[c]!) * 4
          picked[k++] = rgba[at]!
          picked[k++] = rgba[at + 1]!
          picked[k++] = rgba[at + 2]!
        }
      }
    }
  }
  return tf.tidy(() => {
    const source = tf.tensor4d(picked, [2, outH, 2 * outW, 3])
    const [topRows, bottomRows] = tf.unstack(source) as [tf.Tensor3D, tf.Tensor3D]
    const x = tf.tensor3d(cols.frac, [1, outW, 1])
    const y = tf.tensor3d(rows.frac, [outH, 1, 1])
    const across = (band: tf.Tensor3D) => {
      const [left, right] = tf.split(band, 2, 1) as [tf.Tensor3D, tf.Tensor3D]
      return tf.add(left, tf.mul(tf.sub(right, left), x))
    }
    const top = across(topRows)
    const bottom = across(bottomRows)
    let image: tf.Tensor = tf.add(top, tf.mul(tf.sub(bottom, top), y))
    if (spec.channels === 1) image = tf.sum(tf.mul(image, tf.tensor1d(LUMA)), -1, true)
    const [low, high] = spec.range
    image = tf.add(tf.mul(image, (high - low) / 255), low)
    if (spec.mean) image = tf.sub(image, tf.tensor1d(spec.mean))
    if (spec.std) image = tf.div(image, tf.tensor1d(spec.std))
    if (dtype === 'int32') image = tf.cast(tf.round(image), 'int32')
    if (spec.layout === 'nchw') image = tf.transpose(image, [2, 0, 1])
    return tf.expandDims(image, 0) as tf.Tensor4D
  })
}
