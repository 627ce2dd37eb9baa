/**
 * @module protocols/images/decode — encoded JPEG, PNG and WebP images to RGBA pixels, inside the
 * Worker, bounded in bytes and work before decoding starts and while it runs.
 *
 * The header is read the way the decoder will read it (headers.ts), and from it what the decode will
 * allocate and how many passes it makes: an image past MAX_IMAGE_PIXELS, MAX_IMAGE_DECODE_BYTES,
 * MAX_JPEG_SCANS or MAX_DECODE_WORK is refused in microseconds, before any pixel is decoded. JPEG and
 * WebP are decoded by jSquash's mozjpeg and libwebp builds, fed the precompiled `WebAssembly.Module`s
 * that wrangler bundles (Workers cannot compile wasm from bytes). An Emscripten heap never shrinks, so
 * each decode gets an instance of its own, dropped when it ends: no decoder heap is kept between
 * decodes, and one decode runs at a time across the codecs, so at most one decoder heap exists
 * (DECODE_IN_FLIGHT_MAX_BYTES). PNG is decoded in JavaScript (png.ts), its inflate stopped at the size
 * its header allows. docs/images.md has the measurements and the arithmetic of the limits,
 * docs/memory.md the isolate's.
 */
import jpegFactory from '@jsquash/jpeg/codec/dec/mozjpeg_dec.js'
import webpFactory from '@jsquash/webp/codec/dec/webp_dec.js'
// jSquash's modules with an initial memory of 192 KiB instead of 16 MiB (scripts/build/codecs.mjs, run by
// npm install, wrangler's [build] and the tests): the code is theirs, byte for byte.
import jpegWasm from './codecs/mozjpeg_dec.wasm'
import webpWasm from './codecs/webp_dec.wasm'
import { imageSize } from 'image-size'
import { memoryGate } from '../../cache/memory-gate'
import { DEFAULTS } from '../../core/config'
import { ApiError, badRequest } from '../../core/errors'
import { withoutNodeProcess } from '../../runtime/wasm'
import { clampedGrowth, pagesAsked } from '../../runtime/wasm-guard'
import type { ImageHeader, ImageType } from './headers'
import { DECODER_INITIAL_HEAP_BYTES, IMAGE_TYPES, NAMES, readImageHeader, sniff } from './headers'
import type { SamplePoints, Scale } from './jpeg-scaled'
import { decodeSampledJpeg, decodeScaledJpeg, samplable, scaledCost, scaledSize } from './jpeg-scaled'
import { decodePngPixels } from './png'

export { IMAGE_TYPES, MAX_JPEG_SCANS } from './headers'
export type { ImageType } from './headers'

const MiB = 1024 * 1024

/**
 * The most memory one decode holds while it runs, at the default MAX_IMAGE_DECODE_BYTES: its
 * decoder's initial heap and what the header says the decode allocates beyond it (the heap's growth,
 * the JavaScript copies of its input and output). Decodes run one at a time and keep no heap after,
 * so this is all the image decoders take of an isolate (docs/memory.md).
 */
export const DECODE_IN_FLIGHT_MAX_BYTES = DECODER_INITIAL_HEAP_BYTES + DEFAULTS.MAX_IMAGE_DECODE_BYTES
/**
 * The most work one image may cost, in pixels × passes (a JPEG's scans; 1 for the others): a 4 MP
 * image of 10 scans, or 400,000 pixels of 100. Measured in docs/images.md: about 0.3 s of decoding
 * at the bound (pixel limits do not bound a progressive JPEG's scans). A count made before decoding,
 * since a clock read during pure computation does not advance in production.
 */
export const MAX_DECODE_WORK = 40_000_000

/** Decoded pixels: `width × height × 4` bytes, RGBA, row-major. */
export interface Pixels {
  width: number
  height: number
  rgba: Uint8Array
  /** The image's own size, and the denominator of the scale, when it was decoded at a reduced scale (a JPEG at 1/2, 1/4 or 1/8) or at points. */
  source?: { width: number; height: number; scale: Scale }
  /** A JPEG decoded at points only (decodeSampledJpeg): pixel (i, j) is the image's at row `rows[i]`, column `cols[j]`. */
  points?: SamplePoints
}

/** The full-size rows and columns a model's resize reads of a `width × height` image (preprocess.ts, samplePoints). */
export type PointsOf = (width: number, height: number) => SamplePoints

/**
 * Whether an image decoded to `width × height` still gives the model's input all its pixels (after
 * its crop): a baseline JPEG is then decoded at the smallest DCT scale that does (jpeg-scaled.ts).
 */
export type Covers = (width: number, height: number) => boolean

/**
 * Work counted for each 8×8 block a scaled JPEG decode entropy-decodes, in MAX_DECODE_WORK's
 * pixel-passes: every block of the full image is read whatever the scale. Measured: at 1/8 a 12 MP
 * photo costs about 1/6 of mozjpeg's full decode, so a block counts as a quarter of its 64 pixels.
 */
const SCALED_BLOCK_WORK = 16

/** The smallest DCT scale (1/8, then 1/4, 1/2) at which a JPEG of `width × height` still covers, or 1: full size. */
export function jpegScale(width: number, height: number, covers: Covers | undefined): 1 | Scale {
  if (!covers) return 1
  for (const scale of [8, 4, 2] as const) {
    const size = scaledSize(width, height, scale)
    if (covers(size.width, size.height)) return scale
  }
  return 1
}

/** The limits an image is held to: MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_IMAGE_DECODE_BYTES, and what is left of its request's MAX_REQUEST_IMAGE_PIXELS. */
export interface ImageLimits {
  maxBytes: number
  maxPixels: number
  maxDecodeBytes: number
  requestPixels: { left: number; limit: number }
  /**
   * An image of at most this many pixels is decoded whole, as tf.js decodes it, even where a reduced
   * scale would cover the input: its answer is the one a user's own tf.js pipeline gives (a DCT-scaled
   * decode moves a photo's scores by up to ~0.1 on some models, docs/images.md). Past it, a baseline
   * JPEG is decoded at the smallest covering scale. The Worker passes MAX_IMAGE_PIXELS (the default).
   */
  wholePixels?: number
}

/** 413 for an image past a limit, naming the limit. */
export const tooLarge = (message: string) => new ApiError(413, message)

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`

/**
 * What the bytes are and their header as the decoder reads it, and the scale it will be decoded at
 * (`covers`: see jpegScale): 400 if they are not a JPEG, PNG or WebP image, 413 when the decoded
 * size is past `maxPixels` (MAX_IMAGE_PIXELS).
 */
export function readHeader(
  bytes: Uint8Array,
  where: string,
  maxPixels = Infinity,
  covers?: Covers,
  wholePixels = maxPixels,
): ImageHeader & { scale: 1 | Scale } {
  const type = sniff(bytes)
  if (type) {
    let scale: 1 | Scale = 1
    const header = readImageHeader(bytes, where, type, (type, width, height, sequential) => {
      scale = type === 'jpg' && sequential && width * height > wholePixels ? jpegScale(width, height, covers) : 1
      const decoded = scaledSize(width, height, scale)
      const pixels = decoded.width * decoded.height
      if (pixels <= maxPixels) return
      const limit = `more than the limit of ${maxPixels} (MAX_IMAGE_PIXELS)`
      if (scale > 1)
        throw tooLarge(
          `${where}: the JPEG is ${width}×${height}; decoded at 1/${scale} scale it is ${decoded.width}×${decoded.height}, ${pixels} pixels, ${limit}`,
        )
      if (type === 'jpg' && covers && !sequential)
        throw tooLarge(
          `${where}: the JPEG is ${width}×${height}, ${pixels} pixels decoded at full size (a progressive JPEG is decoded whole; only a baseline one is decoded at a reduced scale), ${limit}`,
        )
      throw tooLarge(`${where}: the ${NAMES[type]} is ${width}×${height}, ${pixels} pixels, ${limit}`)
    })
    return { ...header, scale }
  }
  let other: string | undefined
  try {
    other = imageSize(bytes).type
  } catch {
    // image-size's messages name its internals ("unsupported file type: undefined"): say what matters.
  }
  if (other && !Object.hasOwn(IMAGE_TYPES, other))
    throw badRequest(`${where}: a ${other.toUpperCase()} image; send JPEG, PNG or WebP`)
  throw badRequest(`${where}: not a JPEG, PNG or WebP image, or its header is truncated or corrupt`)
}

/** A decoder's output: `data` a view of its heap, where it wrote the RGBA (withoutOutputCopy). */
type Decoded = { width: number; height: number; data: Uint8Array }

/** An Emscripten module factory of jSquash's decoders (codec/dec/*.js), and the decode it exports. */
type Factory = (options: object) => Promise<{ decode(data: BufferSource, ...flags: boolean[]): Decoded | null }>

/**
 * What jSquash's decoders build their output with (`new ImageData(data, width, height)` through
 * embind's global lookup). Workers have no ImageData, and the glue polyfills one when it finds none:
 * a class declared inside its factory, so `globalThis.ImageData` then held the first decoder
 * instance's whole scope — its 16.9 MB heap and, through embind's cached call arguments, its last
 * decoded RGBA (14.2 MB for the largest JPEG) — for the isolate's life (found in a heap snapshot,
 * docs/memory.md). This one holds nothing; it is in place only while a decode runs.
 */
class DecodedImage {
  constructor(
    readonly data: Uint8ClampedArray,
    readonly width: number,
    readonly height: number,
  ) {}
}

/** Runs `work` with `globalThis.ImageData` set to DecodedImage (unless the runtime has its own), then puts it back as it was. */
async function withImageData<T>(work: () => Promise<T>): Promise<T> {
  const own = Object.getOwnPropertyDescriptor(globalThis, 'ImageData')
  if (!own) Object.defineProperty(globalThis, 'ImageData', { value: DecodedImage, configurable: true, writable: true })
  try {
    return await work()
  } finally {
    if (!own) delete (globalThis as { ImageData?: unknown }).ImageData
  }
}

/**
 * Stands in for `Uint8ClampedArray` while a decoder runs. jSquash's decoders return their RGBA as
 * `new Uint8ClampedArray(typed_memory_view(…))` (embind's global lookup): a copy out of the decoder's
 * heap, 14.2 MB for the largest JPEG beside the heap's 15.1 MB, and garbage as soon as the pixels are
 * read. A constructor that returns an object makes `new` give that object: here the view itself, so the
 * pixels are read where the decoder wrote them, and the heap goes when they have been.
 */
function viewOfHeap(view: Uint8Array): Uint8Array {
  return view
}

/**
 * Runs `decode` (one synchronous call into a decoder: nothing else runs meanwhile) with viewOfHeap as
 * `Uint8ClampedArray`, then puts the constructor back.
 */
function withoutOutputCopy<T>(decode: () => T): T {
  const own = Object.getOwnPropertyDescriptor(globalThis, 'Uint8ClampedArray')!
  Object.defineProperty(globalThis, 'Uint8ClampedArray', { ...own, value: viewOfHeap })
  try {
    return decode()
  } finally {
    Object.defineProperty(globalThis, 'Uint8ClampedArray', own)
  }
}

/** The decode under way, across the codecs: one at a time, so one decoder heap at most, and a warning or a heap size is the decode's own. */
let turn: Promise<unknown> = Promise.resolve()
/** The largest decoder heap seen in this isolate. */
let heapHighWater = 0

/**
 * An instance of a decoder whose heap grows by exactly the pages an allocation asks for. Emscripten's
 * glue grows by 20 % of the heap more, to amortise growth; the heap starting at 192 KiB, a decode then
 * holds what it needs. The glue's `_emscripten_resize_heap` import (found by its name: the imports'
 * keys are minified) says how much is asked; the memory handed to the glue clamps `grow` to it.
 */
function growingExactly(
  module: WebAssembly.Module,
  imports: WebAssembly.Imports,
): { instance: WebAssembly.Instance; memory: WebAssembly.Memory } {
  let requested: number | undefined
  let found = false
  for (const space of Object.values(imports) as Record<string, unknown>[]) {
    for (const [name, value] of Object.entries(space)) {
      if (typeof value !== 'function' || value.name !== '_emscripten_resize_heap') continue
      const resize = value as (bytes: number) => number
      space[name] = (bytes: number) => {
        requested = bytes >>> 0
        return resize(bytes)
      }
      found = true
    }
  }
  if (!found) throw new Error('the decoder glue no longer imports _emscripten_resize_heap: re-check images/decode.ts')
  const instance = new WebAssembly.Instance(module, imports)
  const exports: Record<string, unknown> = { ...instance.exports }
  const [name, memory] = Object.entries(instance.exports).find(
    (e): e is [string, WebAssembly.Memory] => e[1] instanceof WebAssembly.Memory,
  )!
  exports[name] = clampedGrowth(memory, (current) =>
    requested === undefined ? Infinity : pagesAsked(requested, current),
  )
  return { instance: { exports } as unknown as WebAssembly.Instance, memory }
}

/** A jSquash Emscripten decoder: a fresh instance for each decode, dropped (with its heap) when the decode ends. */
class EmscriptenCodec {
  #memory: WebAssembly.Memory | undefined
  #warning: string | undefined

  constructor(
    private readonly factory: Factory,
    private readonly module: WebAssembly.Module,
    private readonly flags: boolean[],
  ) {}

  /** The heap of the decode under way, in bytes; 0 between decodes. */
  get heapBytes(): number {
    return this.#memory?.buffer.byteLength ?? 0
  }

  /** The heap the last decode ended with, in bytes. */
  lastHeapBytes = 0

  /** A new instance. */
  #start(): ReturnType<Factory> {
    const module = this.module
    // The glue looks for Node's `process` while its factory runs; hidden, it takes its plain path.
    // In a Worker it also sets `self.location = {href: ""}`, which misleads any library that reads
    // it later (@cfworker/json-schema builds a URL from it): put back as it was.
    const location = Object.getOwnPropertyDescriptor(globalThis, 'location')
    try {
      return withoutNodeProcess(() =>
        this.factory({
          noInitialRun: true,
          print: () => {},
          // libjpeg reports a corrupt file it can still fill in ("Premature end of JPEG file",
          // "Corrupt JPEG data: …") as a warning on stderr: kept, and the decode refused.
          printErr: (message: string) => {
            this.#warning ??= message
          },
          onAbort: () => {},
          instantiateWasm: (imports: WebAssembly.Imports, done: (instance: WebAssembly.Instance) => void) => {
            const { instance, memory } = growingExactly(module, imports)
            this.#memory = memory
            done(instance)
            return instance.exports
          },
        }),
      )
    } finally {
      if (location) Object.defineProperty(globalThis, 'location', location)
      else delete (globalThis as { location?: unknown }).location
    }
  }

  decode(bytes: Uint8Array): Promise<Decoded> {
    const decoding = turn.then(() => withImageData(() => this.#decode(bytes)))
    // Settled without its value: a resolved turn must not keep the decoded RGBA alive.
    turn = decoding.then(
      () => {},
      () => {},
    )
    return decoding
  }

  async #decode(bytes: Uint8Array): Promise<Decoded> {
    this.#warning = undefined
    try {
      const instance = await this.#start()
      const decoded = withoutOutputCopy(() => instance.decode(bytes.slice().buffer, ...this.flags))
      this.lastHeapBytes = this.heapBytes
      heapHighWater = Math.max(heapHighWater, this.heapBytes)
      if (!decoded) throw new Error('Decoding error')
      if (this.#warning !== undefined) throw new Error('the decoder warned of corrupt data')
      return decoded
    } finally {
      // Nothing of the instance is kept but the view of its pixels: its heap goes with the first collection
      // after they have been read (V8 counts a wasm memory as external memory, so a dropped heap hastens
      // one). A failed decode's heap goes too.
      this.#memory = undefined
    }
  }
}

// The codec instances are made for each decode, not at import: no wasm may be instantiated in global scope.
const codecs = {
  // mozjpeg's decode(data, preserveOrientation): jSquash's default, the pixels as stored.
  jpg: new EmscriptenCodec(jpegFactory as unknown as Factory, jpegWasm, [false]),
  webp: new EmscriptenCodec(webpFactory as unknown as Factory, webpWasm, []),
}

/** The wasm decoders' heaps now, in bytes: non-zero only while a decode runs, since none is kept after. */
export const decoderHeapBytes = (): Record<'jpg' | 'webp', number> => ({
  jpg: codecs.jpg.heapBytes,
  webp: codecs.webp.heapBytes,
})

/** The heap the last JPEG or WebP decode ended with, in bytes. */
export const lastDecoderHeapBytes = (type: 'jpg' | 'webp'): number => codecs[type].lastHeapBytes

/** The largest decoder heap any decode in this isolate has had, in bytes. */
export const decoderHeapHighWaterBytes = (): number => heapHighWater

/**
 * Refuses, from the header alone, an image past a limit on its decode: 413 naming it. Counts the image's pixels
 * against what is left of its request's MAX_REQUEST_IMAGE_PIXELS.
 */
function checkLimits(header: ImageHeader & { scale: 1 | Scale }, limits: ImageLimits, where: string): number {
  const { type, width, height, passes, kind, scale } = header
  let { decodeBytes } = header
  let pixels = width * height
  let what = `the ${NAMES[type]} (${kind}) is ${width}×${height}`
  let work = pixels * passes
  if (scale !== 1) {
    // Decoded scaled: the limits hold the decoded size, and the work counts every block read.
    const decoded = scaledSize(width, height, scale)
    const cost = scaledCost(width, height, header.jpeg!.sampling, scale)
    pixels = decoded.width * decoded.height
    decodeBytes = cost.bytes
    // Each scan reads the blocks of its components again: counted as if each read them all.
    work = passes * (pixels + cost.blocks * SCALED_BLOCK_WORK)
    what += ` (${decoded.width}×${decoded.height} decoded at 1/${scale} scale, reading its ${cost.blocks} blocks)`
  }
  if (decodeBytes > limits.maxDecodeBytes) {
    throw tooLarge(
      `${where}: ${what}; decoding it takes ${megabytes(decodeBytes)}, more than the limit of ${megabytes(limits.maxDecodeBytes)} (MAX_IMAGE_DECODE_BYTES)`,
    )
  }
  if (work > MAX_DECODE_WORK) {
    throw tooLarge(
      scale > 1
        ? `${where}: ${what}; decoding it costs ${work} pixel-passes, more than the limit of ${MAX_DECODE_WORK} pixel-passes an image`
        : `${where}: ${what}; decoding it makes ${passes} passes over ${pixels} pixels, more than the limit of ${MAX_DECODE_WORK} pixel-passes an image`,
    )
  }
  if ((limits.requestPixels.left -= pixels) < 0) {
    throw tooLarge(
      `${where}: the request's images add up to more than ${limits.requestPixels.limit} pixels (MAX_REQUEST_IMAGE_PIXELS)`,
    )
  }
  return decodeBytes
}

/**
 * Decodes one encoded image to RGBA: 413 past MAX_IMAGE_BYTES or a limit the header shows it would
 * pass (before decoding), 400 for bytes that are not an image or do not decode. With `covers`, a
 * baseline JPEG is decoded at the smallest scale that still covers (and the limits hold that size).
 */
export async function decodeImage(
  bytes: Uint8Array,
  limits: ImageLimits,
  where: string,
  covers?: Covers,
  pointsOf?: PointsOf,
): Promise<Pixels> {
  if (bytes.byteLength > limits.maxBytes) {
    throw tooLarge(
      `${where}: the image is ${bytes.byteLength} bytes, more than the limit of ${limits.maxBytes} (MAX_IMAGE_BYTES)`,
    )
  }
  const header = readHeader(bytes, where, limits.maxPixels, covers, limits.wholePixels)
  const decodeBytes = checkLimits(header, limits, where)
  const { type, width, height, scale } = header
  // The memory budget counts this decode's bytes (its RGBA, the heap's growth, the copies) while it
  // runs (memory-gate.ts); the decoder's initial heap is DECODE_IN_FLIGHT_MAX_BYTES's, outside it.
  const codec = header.png ? undefined : codecs[type as Exclude<ImageType, 'png'>]
  const release = await memoryGate().reserve(
    decodeBytes,
    `${where}: decoding the ${NAMES[type]} (${width}×${height}${scale > 1 ? ` at 1/${scale} scale` : ''})`,
  )
  if (scale !== 1) {
    try {
      // At the resize's points where the sampling allows (the full decode's pixels there), else at 1/scale.
      if (pointsOf && samplable(header.jpeg!.sampling)) {
        const points = pointsOf(width, height)
        return { ...decodeSampledJpeg(bytes, points, where), source: { width, height, scale }, points }
      }
      return { ...decodeScaledJpeg(bytes, scale, where), source: { width, height, scale } }
    } catch (error) {
      if (error instanceof ApiError) throw error
      // Data no check foresaw (an index past a table, say): still the image's fault, never a 500.
      throw badRequest(`${where}: the JPEG image is truncated or corrupt; it could not be decoded`)
    } finally {
      release()
    }
  }
  let decoded: Decoded
  try {
    if (!codec) return { width, height, rgba: decodePngPixels(header.png!, width, height, where) }
    decoded = await codec.decode(bytes)
  } catch (error) {
    if (!codec) throw error
    // The codecs' own messages name their internals, or nothing ("Decoding error"); none is the client's business.
    throw badRequest(`${where}: the ${NAMES[type]} image is truncated or corrupt; it could not be decoded`)
  } finally {
    release()
  }
  if (decoded.width !== width || decoded.height !== height || decoded.data.length !== width * height * 4) {
    throw badRequest(
      `${where}: the ${NAMES[type]} header says ${width}×${height} but its data decodes to ${decoded.width}×${decoded.height}`,
    )
  }
  return { width, height, rgba: new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, width * height * 4) }
}
