/**
 * The phone-photo decode inside workerd (bench only; bench/phone.mjs serves it): warmserve's own
 * decodeImage and imageTensor on a JPEG body, for a 224×224 model: as the image transform does it
 * now (`sampled`: at the points its resize reads), at the smallest DCT scale that covers the input
 * (`scaled`: 1/8, the path before), or whole by mozjpeg (`full`, which warmserve no longer takes for
 * a baseline JPEG past MAX_IMAGE_PIXELS, so it cannot be timed through its routes).
 *
 * - `POST /decode?mode=sampled|scaled|full&n=N`: decodes and preprocesses the body N times and answers
 *   `{ ms, width, height }`: the mean time of one, by the isolate's clock (whole milliseconds; the
 *   mean of N is finer), and the decoded size. With `&row=1`, also the preprocessed row, flat.
 */
import { decodeImage } from '../src/protocols/images/decode'
import { imageTensor, samplePoints } from '../src/protocols/images/preprocess'
import type { ImageTransform } from '../src/repository/model-config'
import { WasmBackend } from '../src/runtime/wasm'

const MiB = 1024 * 1024
/** nsfwjs's MobileNetV2 input, as bench/phone.mjs configures it. */
const SPEC: ImageTransform = { size: [224, 224], channels: 3, range: [0, 1], fit: 'stretch', layout: 'nhwc' }
/** Room for mozjpeg to decode 12 MP whole (the defaults refuse it: that is the point of the scaled path). */
const limits = () => ({
  maxBytes: 8 * MiB,
  maxPixels: 16_000_000,
  maxDecodeBytes: 256 * MiB,
  requestPixels: { left: Infinity, limit: Infinity },
  // The Worker decodes whole up to MAX_IMAGE_PIXELS (4 MP by default), so a 12 MP photo takes the scaled path there.
  wholePixels: 4_000_000,
})
const covers = (width: number, height: number) => width >= 224 && height >= 224
const pointsOf = (width: number, height: number) => samplePoints(width, height, SPEC)

let backend: Promise<void> | undefined

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url)
    backend ??= new WasmBackend().activate()
    await backend
    const bytes = new Uint8Array(await request.arrayBuffer())
    const mode = url.searchParams.get('mode') ?? 'sampled'
    const decode = () =>
      mode === 'full'
        ? decodeImage(bytes, limits(), 'body')
        : decodeImage(bytes, limits(), 'body', covers, mode === 'sampled' ? pointsOf : undefined)
    const n = Number(url.searchParams.get('n') ?? 1)
    let size = { width: 0, height: 0 }
    const started = Date.now()
    for (let i = 0; i < n; i++) {
      const pixels = await decode()
      size = { width: pixels.width, height: pixels.height }
      imageTensor(pixels, SPEC, 'float32').dispose()
    }
    const ms = (Date.now() - started) / n
    let row: number[] | undefined
    if (url.searchParams.get('row')) {
      const pixels = await decode()
      const tensor = imageTensor(pixels, SPEC, 'float32')
      row = Array.from(await tensor.data())
      tensor.dispose()
    }
    return Response.json({ ms, ...size, row })
  },
}
