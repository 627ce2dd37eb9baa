/**
 * @module protocols/images/headers — what an encoded image is, read the way its decoder will read it,
 * and what decoding it will cost, before a single pixel is decoded.
 *
 * A size check that reads the header differently from the decoder checks another image: a PNG with
 * a second IHDR, or a JPEG whose fill bytes (`FF FF FF E1`) a naive reader takes for a marker, showed
 * one pixel to the check and 8192×8192 to the decoder. So PNG chunks are walked here in full (the
 * decoder in png.ts decodes only what this walk returns), and JPEG markers are read as libjpeg's
 * `next_marker` reads them: bytes before a marker refused, fill bytes skipped, the first SOFn is the
 * frame, and every scan counted to the end-of-image marker. WebP is read as libwebp reads it.
 */
import { ApiError, badRequest } from '../../core/errors'

/** The formats served, by short name. */
export const IMAGE_TYPES = { jpg: 'image/jpeg', png: 'image/png', webp: 'image/webp' } as const
export type ImageType = keyof typeof IMAGE_TYPES
export const NAMES: Record<ImageType, string> = { jpg: 'JPEG', png: 'PNG', webp: 'WebP' }

const MiB = 1024 * 1024
/**
 * The decoder heap a decode is counted at before it grows: jSquash's builds declare 16 MiB, which the
 * limits were set with. The decoders bundled start at 192 KiB (scripts/build/codecs.mjs) and grow
 * exactly, so this floor is now an upper bound, kept so that the limits let through what they did.
 */
export const DECODER_INITIAL_HEAP_BYTES = 16 * MiB
/** Emscripten grows a heap in steps (at least 20% of its size), so a need of N bytes can leave a heap of 1.2 N. */
const HEAP_GROWTH = 1.2
/** A decoder's own rows, tables and buffers beside the image (libjpeg's and libwebp's few image rows, the PNG inflater's window and pieces): 1 MiB is ample up to 16384 pixels wide. */
const CODEC_WORKING_BYTES = 1 * MiB

/** A PNG's layout, as png.ts decodes it: the header's fields, the palette, the image data's pieces. */
export interface PngLayout {
  depth: number
  colorType: number
  interlaced: boolean
  palette?: Uint8Array
  idat: Uint8Array[]
  /** Bytes the image data inflates to, exactly: filter bytes and rows of every pass. */
  inflated: number
}

/** An image's header, read as its decoder reads it, and what decoding will take. */
export interface ImageHeader {
  type: ImageType
  width: number
  height: number
  /** Passes over the image's pixels: a JPEG's scans (a progressive JPEG has about 10), 1 for the others. */
  passes: number
  /**
   * Bytes the decode allocates at its peak beyond its decoder's initial heap: the JavaScript copies
   * (input, output) and the growth of a decoder's heap past its initial size.
   */
  decodeBytes: number
  /** How the image was coded, for messages ("progressive", "16-bit RGBA"). */
  kind: string
  png?: PngLayout
  /** A JPEG's frame: Huffman-coded sequential (SOF0/SOF1, which jpeg-scaled.ts decodes at a reduced scale) or not, and each component's sampling factors. */
  jpeg?: { baseline: boolean; sampling: [number, number][] }
}

const u16 = (b: Uint8Array, i: number) => (b[i]! << 8) | b[i + 1]!
const u32 = (b: Uint8Array, i: number) => ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0
const le16 = (b: Uint8Array, i: number) => b[i]! | (b[i + 1]! << 8)
const le24 = (b: Uint8Array, i: number) => b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16)
const le32 = (b: Uint8Array, i: number) => (le24(b, i) | (b[i + 3]! << 24)) >>> 0
const ascii = (b: Uint8Array, i: number, n: number) => String.fromCharCode(...b.subarray(i, i + n))

/** What the heap of a wasm decoder needing `need` bytes grows by past its initial size. */
const heapGrowth = (need: number) =>
  Math.max(0, Math.ceil((need + CODEC_WORKING_BYTES) * HEAP_GROWTH) - DECODER_INITIAL_HEAP_BYTES)

/** Which served format the bytes are, by signature; undefined for anything else. */
export function sniff(bytes: Uint8Array): ImageType | undefined {
  if (bytes.length >= 8 && u32(bytes, 0) === 0x89504e47 && u32(bytes, 4) === 0x0d0a1a0a) return 'png'
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpg'
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 4) === 'WEBP') return 'webp'
  return undefined
}

/** Samples per pixel of each PNG color type, and the bit depths it allows (PNG spec, 11.2.2). */
const PNG_COLOR: Record<number, { channels: number; depths: number[]; name: string }> = {
  0: { channels: 1, depths: [1, 2, 4, 8, 16], name: 'gray' },
  2: { channels: 3, depths: [8, 16], name: 'RGB' },
  3: { channels: 1, depths: [1, 2, 4, 8], name: 'palette' },
  4: { channels: 2, depths: [8, 16], name: 'gray+alpha' },
  6: { channels: 4, depths: [8, 16], name: 'RGBA' },
}

/** Adam7's passes: first column and row, column and row steps. */
export const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const

/** Bytes of one filtered row of `width` pixels: a filter byte and the packed samples. */
export const pngRowBytes = (width: number, bitsPerPixel: number) => 1 + Math.ceil((width * bitsPerPixel) / 8)

/**
 * Walks a PNG's chunks: IHDR first and once, PLTE and IDAT kept, IEND required; ancillary chunks
 * (iCCP, zTXt, iTXt, text, gamma…) skipped unread, since the pixels do not depend on them and a
 * compressed one can inflate without bound.
 */
function readPng(bytes: Uint8Array, where: string, sized: SizeCheck): ImageHeader {
  const corrupt = (why: string) => badRequest(`${where}: the PNG image is truncated or corrupt; ${why}`)
  let header: { width: number; height: number; depth: number; colorType: number; interlaced: boolean } | undefined
  let palette: Uint8Array | undefined
  const idat: Uint8Array[] = []
  for (let at = 8; ;) {
    if (at + 12 > bytes.length) throw corrupt(`its ${bytes.length} bytes end before an IEND chunk`)
    const length = u32(bytes, at)
    const type = ascii(bytes, at + 4, 4)
    const data = at + 8
    if (length > 0x7fffffff || data + length + 4 > bytes.length)
      throw corrupt(
        `chunk '${type}' (byte ${at}) says ${length} bytes but ${Math.max(0, bytes.length - data - 4)} remain`,
      )
    const body = bytes.subarray(data, data + length)
    if (!header && type !== 'IHDR') throw corrupt(`its first chunk is '${type}', not IHDR`)
    if (type === 'IHDR') {
      // A second IHDR would give the decoder other dimensions than the ones checked.
      if (header) throw corrupt(`a second IHDR chunk (byte ${at}); a PNG has exactly one, first`)
      if (length !== 13) throw corrupt(`its IHDR chunk is ${length} bytes, not 13`)
      const [width, height, depth, colorType] = [u32(body, 0), u32(body, 4), body[8]!, body[9]!]
      const color = PNG_COLOR[colorType]
      if (!color || !color.depths.includes(depth))
        throw corrupt(`IHDR declares color type ${colorType} with bit depth ${depth}, which PNG does not allow`)
      if (body[10] !== 0 || body[11] !== 0 || body[12]! > 1)
        throw corrupt('IHDR declares a compression, filter or interlace method PNG does not define')
      if (width === 0 || height === 0 || width > 0x7fffffff || height > 0x7fffffff)
        throw corrupt(`the PNG header declares ${width}×${height} pixels`)
      sized('png', width, height)
      header = { width, height, depth, colorType, interlaced: body[12] === 1 }
    } else if (type === 'PLTE') {
      if (length % 3 !== 0 || length === 0 || length > 768)
        throw corrupt(`its PLTE chunk is ${length} bytes, not 3 to 768 in threes`)
      palette = body
    } else if (type === 'IDAT') {
      idat.push(body)
    } else if (type === 'IEND') {
      break
    } else if (!(type.charCodeAt(0) & 0x20)) {
      // A critical chunk (upper-case first letter) that is not understood: the PNG spec says to stop.
      throw corrupt(`an unknown critical chunk '${type}' (byte ${at})`)
    }
    at = data + length + 4
  }
  const { width, height, depth, colorType, interlaced } = header!
  if (colorType === 3 && !palette) throw corrupt('a palette image without a PLTE chunk')
  if (idat.length === 0) throw corrupt('no IDAT chunk')
  const bitsPerPixel = PNG_COLOR[colorType]!.channels * depth
  let inflated = 0
  if (!interlaced) inflated = height * pngRowBytes(width, bitsPerPixel)
  else {
    for (const [x0, y0, dx, dy] of ADAM7) {
      const w = Math.ceil((width - x0) / dx)
      const h = Math.ceil((height - y0) / dy)
      if (w > 0 && h > 0) inflated += h * pngRowBytes(w, bitsPerPixel)
    }
  }
  const kind = `${depth}-bit ${PNG_COLOR[colorType]!.name}${interlaced ? ' interlaced' : ''}`
  // In JavaScript: the inflated rows, the RGBA output, the inflater's window and output pieces. No wasm heap.
  const decodeBytes = inflated + width * height * 4 + CODEC_WORKING_BYTES
  return {
    type: 'png',
    width,
    height,
    passes: 1,
    decodeBytes,
    kind,
    png: { depth, colorType, interlaced, ...(palette ? { palette } : {}), idat, inflated },
  }
}

/** The most scans a JPEG may have: libjpeg decodes each over the whole image (TurboJPEG's scan limit guards the same); real progressive files have about 10. */
export const MAX_JPEG_SCANS = 100

/** SOFn markers libjpeg's frame header reader knows, by what they code. */
const UNSERVED_FRAMES: Record<number, string> = {
  0xc3: 'lossless',
  0xc5: 'hierarchical',
  0xc6: 'hierarchical',
  0xc7: 'hierarchical',
  0xc9: 'arithmetic-coded',
  0xca: 'arithmetic-coded',
  0xcb: 'arithmetic-coded',
  0xcd: 'arithmetic-coded',
  0xce: 'arithmetic-coded',
  0xcf: 'arithmetic-coded',
}

/**
 * Reads a JPEG's markers as libjpeg does, to the end-of-image marker: the frame (the first SOFn), its
 * components' sampling, the scans. Bytes between segments that are not a marker are refused (libjpeg
 * skips them with a warning, and a reader that skips them differently sees another image).
 */
function readJpeg(bytes: Uint8Array, where: string, sized: SizeCheck): ImageHeader {
  const corrupt = (why: string) => badRequest(`${where}: the JPEG image is truncated or corrupt; ${why}`)
  let frame: { width: number; height: number; progressive: boolean; sampling: [number, number][] } | undefined
  let adobeTransform: number | undefined
  let scans = 0
  let at = 2
  for (;;) {
    if (at >= bytes.length)
      throw corrupt(
        scans
          ? 'it has no end-of-image marker after its last scan'
          : `its ${bytes.length} bytes end before its first scan`,
      )
    if (bytes[at] !== 0xff) throw corrupt(`byte ${at} is 0x${bytes[at]!.toString(16)} where a marker belongs`)
    // Any number of FF fill bytes may precede a marker (ITU T.81 B.1.1.2).
    while (bytes[at] === 0xff) at++
    if (at >= bytes.length) throw corrupt('it ends inside a marker')
    const marker = bytes[at++]!
    if (marker === 0xd9) {
      if (!scans) throw corrupt('it ends before its first scan')
      break
    }
    if (marker === 0xd8 || marker === 0x00)
      throw corrupt(`an unexpected marker 0xFF${marker.toString(16).toUpperCase()} (byte ${at - 2})`)
    if ((marker & 0xf8) === 0xd0 || marker === 0x01) continue // RSTn and TEM stand alone
    if (at + 2 > bytes.length) throw corrupt('it ends inside a marker segment')
    const length = u16(bytes, at)
    if (length < 2 || at + length > bytes.length)
      throw corrupt(
        `the segment of marker 0xFF${marker.toString(16).toUpperCase()} (byte ${at - 2}) says ${length} bytes but ${bytes.length - at} remain`,
      )
    const body = bytes.subarray(at + 2, at + length)
    at += length
    if (marker === 0xc0 || marker === 0xc1 || marker === 0xc2) {
      if (frame) throw corrupt('a second frame header (SOF marker); a JPEG has one')
      if (body.length < 6) throw corrupt('its frame header is cut short')
      const [precision, height, width, count] = [body[0]!, u16(body, 1), u16(body, 3), body[5]!]
      if (precision !== 8) throw badRequest(`${where}: a ${precision}-bit JPEG; send an 8-bit JPEG`)
      if (height === 0 || width === 0) throw corrupt(`the JPEG frame declares ${width}×${height} pixels`)
      sized('jpg', width, height, marker !== 0xc2)
      if (body.length !== 6 + 3 * count) throw corrupt('its frame header does not list its components')
      if (count === 4) {
        // libjpeg cannot turn CMYK into RGB; these come from print workflows.
        const space = adobeTransform === 2 ? 'YCCK' : 'CMYK'
        throw badRequest(
          `${where}: a ${space} JPEG (4 color components, as print software writes them); send an RGB or grayscale JPEG`,
        )
      }
      if (count !== 1 && count !== 3) throw corrupt(`its frame has ${count} color components; a JPEG photo has 1 or 3`)
      const sampling: [number, number][] = []
      for (let c = 0; c < count; c++) {
        const hv = body[6 + 3 * c + 1]!
        if (hv >> 4 < 1 || hv >> 4 > 4 || (hv & 15) < 1 || (hv & 15) > 4)
          throw corrupt('a component has sampling factors outside 1–4')
        sampling.push([hv >> 4, hv & 15])
      }
      frame = { width, height, progressive: marker === 0xc2, sampling }
    } else if (UNSERVED_FRAMES[marker]) {
      if (frame) throw corrupt('a second frame header (SOF marker); a JPEG has one')
      throw badRequest(
        `${where}: a ${UNSERVED_FRAMES[marker]} JPEG; send a baseline or progressive (Huffman-coded) JPEG`,
      )
    } else if (marker === 0xee && body.length >= 12 && ascii(body, 0, 5) === 'Adobe') {
      adobeTransform = body[11]
    } else if (marker === 0xda) {
      if (!frame) throw corrupt('a scan before its frame header')
      if (++scans > MAX_JPEG_SCANS) {
        throw new ApiError(
          413,
          `${where}: the JPEG has more than ${MAX_JPEG_SCANS} scans, the limit; each is decoded over the whole image (a progressive JPEG has about 10)`,
        )
      }
      // Entropy-coded data runs to the next marker: FF followed by neither a stuffed 00 nor RSTn.
      while (at + 1 < bytes.length && !(bytes[at] === 0xff && bytes[at + 1] !== 0 && (bytes[at + 1]! & 0xf8) !== 0xd0))
        at++
      if (at + 1 >= bytes.length) at = bytes.length
    }
  }
  if (!frame) throw corrupt('it has no frame header')
  const { width, height, progressive, sampling } = frame
  const maxH = Math.max(...sampling.map(([h]) => h))
  const maxV = Math.max(...sampling.map(([, v]) => v))
  const mcus = Math.ceil(width / (8 * maxH)) * Math.ceil(height / (8 * maxV))
  // A progressive or multi-scan JPEG keeps every coefficient (64 × 2 bytes a block) until its last scan.
  const coefficients = progressive || scans > 1 ? mcus * sampling.reduce((n, [h, v]) => n + h * v, 0) * 128 : 0
  const pixels = width * height
  // jSquash copies the input into the heap and the RGBA output out of it, to JavaScript.
  const decodeBytes = 2 * bytes.length + 4 * pixels + heapGrowth(bytes.length + 4 * pixels + coefficients)
  const kind = `${progressive ? 'progressive' : 'baseline'}${sampling.length === 1 ? ' grayscale' : ''}, ${scans} scan${scans === 1 ? '' : 's'}`
  return { type: 'jpg', width, height, passes: scans, decodeBytes, kind, jpeg: { baseline: !progressive, sampling } }
}

/** Reads a WebP's RIFF chunks as libwebp does: VP8 (lossy), VP8L (lossless), or VP8X then one of them; animations refused. */
function readWebp(bytes: Uint8Array, where: string, sized: SizeCheck): ImageHeader {
  const corrupt = (why: string) => badRequest(`${where}: the WebP image is truncated or corrupt; ${why}`)
  const chunk = (at: number) => {
    if (at + 8 > bytes.length) throw corrupt(`its ${bytes.length} bytes end before its image data`)
    const size = le32(bytes, at + 4)
    if (at + 8 + size > bytes.length)
      throw corrupt(`chunk '${ascii(bytes, at, 4)}' says ${size} bytes but ${bytes.length - at - 8} remain`)
    return { type: ascii(bytes, at, 4), body: bytes.subarray(at + 8, at + 8 + size), next: at + 8 + size + (size & 1) }
  }
  const frameOf = (c: { type: string; body: Uint8Array }) => {
    const b = c.body
    if (c.type === 'VP8 ') {
      if (b.length < 10 || b[3] !== 0x9d || b[4] !== 0x01 || b[5] !== 0x2a)
        throw corrupt('its VP8 frame header is missing')
      return { width: le16(b, 6) & 0x3fff, height: le16(b, 8) & 0x3fff, lossless: false }
    }
    if (c.type === 'VP8L') {
      if (b.length < 5 || b[0] !== 0x2f) throw corrupt('its VP8L header is missing')
      const bits = le32(b, 1)
      return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1, lossless: true }
    }
    return undefined
  }
  let first = chunk(12)
  let frame = frameOf(first)
  let alpha = false
  if (!frame) {
    if (first.type !== 'VP8X' || first.body.length < 10)
      throw corrupt(`its first chunk is '${first.type}', not VP8, VP8L or VP8X`)
    const flags = first.body[0]!
    if (flags & 0x02) throw badRequest(`${where}: an animated WebP; send a still image`)
    alpha = (flags & 0x10) !== 0
    const canvas = { width: le24(first.body, 4) + 1, height: le24(first.body, 7) + 1 }
    // libwebp decodes the first VP8/VP8L chunk after VP8X and refuses one whose size is not the canvas's.
    for (let at = first.next; !frame; at = first.next) {
      first = chunk(at)
      frame = frameOf(first)
    }
    if (frame.width !== canvas.width || frame.height !== canvas.height) {
      throw corrupt(`its canvas is ${canvas.width}×${canvas.height} but its image ${frame.width}×${frame.height}`)
    }
  }
  const { width, height, lossless } = frame
  if (width === 0 || height === 0) throw corrupt(`the WebP header declares ${width}×${height} pixels`)
  sized('webp', width, height)
  const pixels = width * height
  // libwebp: the RGBA output in its heap; lossless keeps a 4-byte ARGB image and its transforms' copy, lossy an alpha plane.
  const working = lossless ? 8 * pixels : alpha ? pixels : 0
  const decodeBytes = 2 * bytes.length + 4 * pixels + heapGrowth(bytes.length + 4 * pixels + working)
  return { type: 'webp', width, height, passes: 1, decodeBytes, kind: lossless ? 'lossless' : 'lossy' }
}

/**
 * Called with the dimensions as soon as they are read, to refuse an image too large before the rest
 * of its header is walked (a truncated 60000×60000 PNG is too large before it is truncated).
 * `sequential` is true for a Huffman-coded sequential JPEG frame, which can be decoded scaled.
 */
export type SizeCheck = (type: ImageType, width: number, height: number, sequential?: boolean) => void

/** An image's header as its decoder reads it; 400 if the bytes are not a JPEG, PNG or WebP, or their header is not one. */
export function readImageHeader(bytes: Uint8Array, where: string, type: ImageType, sized: SizeCheck): ImageHeader {
  if (type === 'png') return readPng(bytes, where, sized)
  if (type === 'jpg') return readJpeg(bytes, where, sized)
  return readWebp(bytes, where, sized)
}
