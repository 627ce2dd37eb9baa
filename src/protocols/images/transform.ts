/** @module protocols/images/transform — the `image` input transform: encoded images in, one row each. */
import type { Config } from '../../core/config'
import { configFault } from '../../core/errors'
import type { TensorSpec } from '../../runtime/signature'
import { formatShape } from '../../runtime/signature'
import { tf } from '../../runtime/tf'
import { guardedBackend } from '../../runtime/wasm-guard'
import type { InputTransform } from '../input-transform'
import type { ImageTransform } from '../../repository/model-config'
import { reserveTensor } from '../../cache/memory-gate'
import { decodeImage, IMAGE_TYPES } from './decode'
import { imageShape, imageValues, rowLength, samplePoints, sourceRegion } from './preprocess'

/**
 * Why an image transform cannot fill `spec`, or undefined when it can: the input must be
 * `[n, h, w, c]` (`layout: nhwc`) or `[n, c, h, w]` (`nchw`), of float32 or int32.
 */
export function misfit(image: ImageTransform, spec: TensorSpec): string | undefined {
  if (spec.dtype !== 'float32' && spec.dtype !== 'int32')
    return `input '${spec.name}' is ${spec.dtype}; an image fills float32 or int32`
  if (spec.shape === null) return undefined
  const [h, w] = image.size
  const nchw = image.layout === 'nchw'
  const wanted = nchw ? [-1, image.channels, h, w] : [-1, h, w, image.channels]
  const fits = spec.shape.length === 4 && spec.shape.every((d, i) => d === -1 || i === 0 || d === wanted[i])
  if (fits) return undefined
  const made = nchw ? `[n, ${image.channels}, ${h}, ${w}] (layout nchw)` : `[n, ${h}, ${w}, ${image.channels}]`
  // A shape the other layout would fill: say which key fixes it.
  const other = nchw ? [-1, h, w, image.channels] : [-1, image.channels, h, w]
  const hint =
    spec.shape.length === 4 && spec.shape.every((d, i) => d === -1 || i === 0 || d === other[i])
      ? `; set "layout": "${nchw ? 'nhwc' : 'nchw'}"`
      : ''
  return `input '${spec.name}' has shape ${formatShape(spec.shape)}; the image makes ${made}${hint}`
}

/** What metadata shows for an image input: the content types it takes and its preprocessing. */
export const imageParameters = (image: ImageTransform) => ({ content_types: Object.values(IMAGE_TYPES), image })

/** The transform that decodes, resizes and normalizes each element into one row of `spec`. */
export function imageTransform(model: string, image: ImageTransform, spec: TensorSpec): InputTransform {
  const problem = misfit(image, spec)
  if (problem) throw configFault(model, `inputs.${spec.name}.image does not fit: ${problem}`)
  return {
    kind: 'image',
    async tensor(elements, where, config: Config, request, sizes) {
      // The request's pixels are counted across all its inputs, not afresh for each.
      const limits = {
        maxBytes: config.MAX_IMAGE_BYTES,
        maxPixels: config.MAX_IMAGE_PIXELS,
        maxDecodeBytes: config.MAX_IMAGE_DECODE_BYTES,
        requestPixels: request.imagePixels,
      }
      // The batch is reserved in the memory budget before it is made (cache/memory-gate.ts): 4 bytes an
      // element (float32 or int32), twice for several rows, then the batch's own bytes. It is the only
      // tensor made (each image's values are written into it where it lies), but several rows run in
      // sub-batches, each a copy of its rows, and admission hands the inputs' room to a sub-batch that
      // does not fit beside them: the second share keeps that room. Reserved once, 48 photos to
      // MobileNetV2 were admitted and their run found no heap (test/input-memory.test.ts).
      const [h, w] = image.size
      // A JPEG is decoded at the smallest scale whose crop (or whole image) still has the input's pixels.
      const covers = (width: number, height: number) => {
        const region = sourceRegion(width, height, image)
        return region.width >= w && region.height >= h
      }
      const rowBytes = h * w * image.channels * 4
      const n = elements.length
      const reservation = await reserveTensor(
        rowBytes * n * (n > 1 ? 2 : 1),
        `input '${spec.name}': ${n} image row${n > 1 ? 's' : ''} of ${rowBytes} bytes${n > 1 ? ' and room for their sub-batches' : ''}`,
      )
      let batch: tf.Tensor | undefined
      // One tensor for all the rows, each image's values written into it: for several rows on the wasm
      // backend, where the batch lies on its heap; else into one array that becomes the tensor. No row
      // tensors, no concatenation.
      const dtype = spec.dtype === 'int32' ? 'int32' : 'float32'
      const length = rowLength(image)
      const onHeap = n > 1 ? guardedBackend() : undefined
      let values: Float32Array | Int32Array | undefined
      let made = false
      try {
        // One image at a time: only one decoded image is held at once, besides the small rows.
        for (const [i, bytes] of elements.entries()) {
          // A decode runs to its end without yielding; between two, the isolate's other requests get
          // their turn, so none waits longer than one image's decode (bounded by MAX_DECODE_WORK).
          if (i > 0) await new Promise((resolve) => setTimeout(resolve, 0))
          const pixels = await decodeImage(bytes, limits, where(i), covers, (width, height) =>
            samplePoints(width, height, image),
          )
          // The size as sent, which :detect maps boxes onto (a scaled decode is resized from the same crop of it).
          const { width, height } = pixels.source ?? pixels
          sizes?.push({ width, height })
          if (onHeap) {
            // Its view taken again for each row: the heap may have grown (and its buffer moved) while
            // other requests ran between two decodes.
            batch ??= tf.zeros(imageShape(image, n), dtype)
            imageValues(pixels, image, onHeap.typedArrayFromHeap(batch) as Float32Array | Int32Array, i * length)
          } else
            imageValues(
              pixels,
              image,
              (values ??= new (dtype === 'int32' ? Int32Array : Float32Array)(n * length)),
              i * length,
            )
        }
        if (values) batch = tf.tensor(values, imageShape(image, n), dtype)
        made = true
        // The batch keeps its own bytes reserved until its run is admitted or it is disposed.
        return reservation.keep(batch!, rowBytes * n)
      } finally {
        if (!made) {
          batch?.dispose()
          reservation.release()
        }
      }
    },
  }
}
