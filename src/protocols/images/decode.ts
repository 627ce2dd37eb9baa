/**
 * @module protocols/images/decode — encoded JPEG, PNG and WebP images to RGBA pixels, inside the
 * Worker, within the size limits.
 *
 * The image's dimensions are read from its header (`image-size`) before a single pixel is decoded,
 * so a small file declaring 60000×60000 is refused in microseconds, not after allocating 14 GB.
 * JPEG and WebP are decoded by jSquash's mozjpeg and libwebp builds, fed the precompiled
 * `WebAssembly.Module`s that wrangler bundles (Workers cannot compile wasm from bytes). A failed
 * decode leaves an Emscripten instance exited or its heap holding what the unwound call allocated,
 * so the instance is dropped and the next image gets a fresh one. PNG is decoded by `fast-png`, in
 * JavaScript: jSquash's PNG decoder is a wasm-bindgen singleton that cannot be re-instantiated, and
 * it leaks its output buffer on every corrupt file. docs/images.md has the measurements.
 */
import jpegDecoder, { init as initJpeg } from '@jsquash/jpeg/decode.js'
import webpDecoder, { init as initWebp } from '@jsquash/webp/decode.js'
import jpegWasm from '@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm'
import webpWasm from '@jsquash/webp/codec/dec/webp_dec.wasm'
import { convertIndexedToRgb, decode as decodePng } from 'fast-png'
import { imageSize } from 'image-size'
import { ApiError, badRequest } from '../../errors'
import { withoutNodeProcess } from '../../runtime/wasm'

/** The formats served, by the type `image-size` reports and by content type. */
export const IMAGE_TYPES = { jpg: 'image/jpeg', png: 'image/png', webp: 'image/webp' } as const
export type ImageType = keyof typeof IMAGE_TYPES

/** Decoded pixels: `width × height × 4` bytes, RGBA, row-major. */
export interface Pixels {
  width: number
  height: number
  rgba: Uint8Array
}

/** The limits an image is held to: MAX_IMAGE_BYTES and MAX_IMAGE_PIXELS, and what is left of its request's MAX_REQUEST_IMAGE_PIXELS. */
export interface ImageLimits {
  maxBytes: number
  maxPixels: number
  requestPixels: { left: number; limit: number }
}

const NAMES: Record<ImageType, string> = { jpg: 'JPEG', png: 'PNG', webp: 'WebP' }

/** 413 for an image past a limit, naming the limit. */
export const tooLarge = (message: string) => new ApiError(413, message)

/** What the bytes are and their declared size, from the header alone; 400 if they are not a JPEG, PNG or WebP image. */
export function readHeader(bytes: Uint8Array, where: string): { type: ImageType; width: number; height: number } {
  let size: ReturnType<typeof imageSize>
  try {
    size = imageSize(bytes)
  } catch {
    // image-size's messages name its internals ("unsupported file type: undefined"): say what matters.
    throw badRequest(`${where}: not a JPEG, PNG or WebP image, or its header is truncated or corrupt`)
  }
  const type = size.type as string
  if (!Object.hasOwn(IMAGE_TYPES, type)) throw badRequest(`${where}: a ${type.toUpperCase()} image; send JPEG, PNG or WebP`)
  const { width, height } = size
  if (!(width > 0 && height > 0)) throw badRequest(`${where}: the ${NAMES[type as ImageType]} header declares ${width}×${height} pixels`)
  return { type: type as ImageType, width, height }
}

type Decoder = (bytes: Uint8Array) => Promise<{ width: number; height: number; data: ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number } }>

/** An Emscripten codec made afresh after any failure (see the module comment). */
function emscriptenCodec(init: (module: WebAssembly.Module, options: object) => Promise<void> | void, module: WebAssembly.Module, decode: (buffer: ArrayBuffer) => Promise<{ width: number; height: number; data: Uint8ClampedArray }>): Decoder {
  let fresh = false
  const start = () => {
    // The glue looks for Node's `process` while its factory runs; hidden, it takes its plain path.
    // In a Worker it also sets `self.location = {href: ""}`, which misleads any library that reads
    // it later (@cfworker/json-schema builds a URL from it): put back as it was.
    const location = Object.getOwnPropertyDescriptor(globalThis, 'location')
    try {
      withoutNodeProcess(() => init(module, { print: () => {}, printErr: () => {}, onAbort: () => {} }))
    } finally {
      if (location) Object.defineProperty(globalThis, 'location', location)
      else delete (globalThis as { location?: unknown }).location
    }
    fresh = true
  }
  return async (bytes) => {
    if (!fresh) start()
    try {
      return await decode(bytes.slice().buffer)
    } catch (error) {
      fresh = false
      throw error
    }
  }
}

// The codec instances are made on first use, not at import: no wasm may be instantiated in global scope.
const decoders: Record<ImageType, Decoder> = {
  jpg: emscriptenCodec(initJpeg, jpegWasm, jpegDecoder),
  webp: emscriptenCodec(initWebp, webpWasm, webpDecoder),
  png: async (bytes) => {
    const png = decodePng(bytes)
    const { width, height } = png
    if (png.palette) return { width, height, data: expand(convertIndexedToRgb(png), width, height, png.palette[0]!.length, 8) }
    return { width, height, data: expand(png.data, width, height, png.channels, png.depth) }
  },
}

/** PNG samples of any channel count and depth to RGBA bytes: gray to three equal channels, 16 bits to their high byte. */
function expand(data: ArrayLike<number>, width: number, height: number, channels: number, depth: number): Uint8Array {
  const rgba = new Uint8Array(width * height * 4)
  const sample = depth === 16 ? (i: number) => data[i]! >> 8 : depth === 8 ? (i: number) => data[i]! : undefined
  // Gray of 1, 2 or 4 bits: packed from the high bit, each row padded to a whole byte, scaled to 0–255.
  const rowBits = Math.ceil((width * depth) / 8) * 8
  const max = (1 << depth) - 1
  const packed = (p: number) => {
    const bit = Math.floor(p / width) * rowBits + (p % width) * depth
    return Math.round((((data[bit >> 3]! >> (8 - depth - (bit & 7))) & max) * 255) / max)
  }
  const gray = channels <= 2
  for (let p = 0; p < width * height; p++) {
    const s = p * channels
    const r = sample ? sample(s) : packed(p)
    rgba[p * 4] = r
    rgba[p * 4 + 1] = gray ? r : sample!(s + 1)
    rgba[p * 4 + 2] = gray ? r : sample!(s + 2)
    rgba[p * 4 + 3] = 255
  }
  return rgba
}

/** Whether a JPEG's last start-of-scan marker is followed by an end-of-image marker. */
function endsItsScan(bytes: Uint8Array): boolean {
  let scan = -1
  let end = -1
  for (let i = 0; i + 1 < bytes.length; i++) {
    if (bytes[i] !== 0xff) continue
    if (bytes[i + 1] === 0xda) scan = i
    else if (bytes[i + 1] === 0xd9) end = i
  }
  return scan !== -1 && end > scan
}

/**
 * Decodes one encoded image to RGBA: 413 past MAX_IMAGE_BYTES or MAX_IMAGE_PIXELS (the pixel count
 * from the header, before decoding), 400 for bytes that are not an image or do not decode.
 */
export async function decodeImage(bytes: Uint8Array, limits: ImageLimits, where: string): Promise<Pixels> {
  if (bytes.byteLength > limits.maxBytes) {
    throw tooLarge(`${where}: the image is ${bytes.byteLength} bytes, more than the limit of ${limits.maxBytes} (MAX_IMAGE_BYTES)`)
  }
  const { type, width, height } = readHeader(bytes, where)
  if (width * height > limits.maxPixels) {
    throw tooLarge(`${where}: the ${NAMES[type]} is ${width}×${height}, ${width * height} pixels, more than the limit of ${limits.maxPixels} (MAX_IMAGE_PIXELS)`)
  }
  if ((limits.requestPixels.left -= width * height) < 0) {
    throw tooLarge(`${where}: the request's images add up to more than ${limits.requestPixels.limit} pixels (MAX_REQUEST_IMAGE_PIXELS)`)
  }
  // libjpeg decodes a JPEG cut short and fills in gray, with only a warning: a scan (SOS, FFDA) must be
  // followed by the end-of-image marker (FFD9). Entropy-coded data stuffs every FF byte (FF00), so
  // neither can appear inside a scan.
  if (type === 'jpg' && !endsItsScan(bytes)) {
    throw badRequest(`${where}: the JPEG image is truncated or corrupt; it has no end-of-image marker after its last scan`)
  }
  let decoded: Awaited<ReturnType<Decoder>>
  try {
    decoded = await decoders[type](bytes)
  } catch {
    // The codecs' own messages name their internals, or nothing ("Decoding error"); none is the client's business.
    throw badRequest(`${where}: the ${NAMES[type]} image is truncated or corrupt; it could not be decoded`)
  }
  if (decoded.width !== width || decoded.height !== height || decoded.data.length !== width * height * 4) {
    throw badRequest(`${where}: the ${NAMES[type]} header says ${width}×${height} but its data decodes to ${decoded.width}×${decoded.height}`)
  }
  return { width, height, rgba: new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, width * height * 4) }
}
