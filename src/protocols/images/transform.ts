/** @module protocols/images/transform — the `image` input transform: encoded images in, one row each. */
import type { Config } from '../../core/config'
import { configFault } from '../../core/errors'
import type { TensorSpec } from '../../runtime/signature'
import { formatShape } from '../../runtime/signature'
import { tf } from '../../runtime/tf'
import type { InputTransform } from '../input-transform'
import type { ImageTransform } from '../../repository/model-config'
import { reserveTensor } from '../../cache/memory-gate'
import { decodeImage, IMAGE_TYPES } from './decode'
import { imageTensor, samplePoints, sourceRegion } from './preprocess'

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
      const rows: tf.Tensor[] = []
      // The rows and their concatenation are reserved in the memory budget before the first is made:
      // 4 bytes an element (float32 or int32), twice while the rows and the batch are both held, then the
      // batch's own bytes (cache/memory-gate.ts).
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
        `input '${spec.name}': ${n} image row${n > 1 ? 's' : ''} of ${rowBytes} bytes${n > 1 ? ' and their concatenation' : ''}`,
      )
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
          rows.push(imageTensor(pixels, image, spec.dtype))
        }
        const batch = rows.length === 1 ? rows.pop()! : tf.concat(rows, 0)
        made = true
        // The rows go; the batch keeps its own bytes reserved until its run is admitted or it is disposed.
        return reservation.keep(batch, rowBytes * n)
      } finally {
        tf.dispose(rows)
        if (!made) reservation.release()
      }
    },
  }
}
