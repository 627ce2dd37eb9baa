/**
 * @module protocols/images/jpeg-scaled — a baseline JPEG decoded at 1/2, 1/4 or 1/8 of its size in
 * the DCT domain, as libjpeg's `scale_num/scale_denom` does (sharp's and Cloudflare Images'
 * shrink-on-load): a 224×224 model never needs more than 1/8 of a 12-megapixel photo, and at 1/8 a
 * block is its DC coefficient alone.
 *
 * Each 8×8 block becomes N×N pixels (N = 8 / scale) by the N-point inverse DCT of its N×N lowest
 * frequencies (libjpeg 7+'s jpeg_idct_4x4 and 2x2 do the same); at 1/8 the AC coefficients are only
 * skipped, never built. A subsampled chroma component is transformed at up to twice that size where
 * its sampling allows (libjpeg's scaled chroma), else replicated; YCbCr to RGB by libjpeg-turbo's
 * tables. Or, decodeSampledJpeg: the full-size pixels at chosen points only.
 * Served: baseline and extended Huffman-coded frames (SOF0, SOF1), 8-bit, 1 or 3 components, any
 * sampling factors, interleaved or not, restart intervals. Everything else takes mozjpeg at full
 * size (decode.ts). Corrupt or truncated data is a 400; the work is bounded by the frame's block
 * count, which decode.ts bounds before calling.
 */
import { badRequest } from '../../core/errors'

/** The scales served: the denominator of `1/scale`. */
export type Scale = 2 | 4 | 8

/** libjpeg's output size at `1/scale`: jdiv_round_up(dimension, scale). */
export const scaledSize = (width: number, height: number, scale: number) => ({
  width: Math.ceil(width / scale),
  height: Math.ceil(height / scale),
})

/** Natural (row-major) position of each zigzag index (ITU T.81 figure A.6). */
const ZIGZAG = Uint8Array.from([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
  35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47,
  55, 62, 63,
])

/** Bits of a Huffman code resolved by one table lookup; longer codes (rare) are walked code length by length. */
const LOOKUP_BITS = 9

/** A Huffman table as libjpeg's jdhuff.c builds it: a LOOKUP_BITS-bit table, then maxcode/valoffset by length. */
interface Huffman {
  /** `length << 8 | symbol` by the next LOOKUP_BITS bits; 0 for a longer code. */
  lookup: Uint16Array
  /** The largest code of each length (−1 for none); index 17 is a sentinel. */
  maxcode: Int32Array
  /** What to add to a code of each length to index `symbols`. */
  valoffset: Int32Array
  symbols: Uint8Array
  /**
   * For an AC table, skipping a coefficient in one lookup by the next LOOKUP_BITS bits:
   * `bits << 8 | step`, the code's and the value's bits and how far the zigzag index moves (64 at
   * end-of-block); 0 for a longer code.
   */
  skips: Uint16Array
}

interface Component {
  id: number
  h: number
  v: number
  quant: number
  /** Blocks a row and block rows, padded to whole MCUs. */
  blocksWide: number
  blocksHigh: number
  /** This component's IDCT size: N, or 2N where its subsampling allows. */
  n: number
  plane: Uint8Array
  /** Blocks a row and block rows that a non-interleaved scan codes (not padded to MCUs). */
  codedWide: number
  codedHigh: number
  dc?: Huffman
  ac?: Huffman
  /** In a sampled decode (decodeSampledJpeg), the plane's pixels that are read; `plane` is then empty. */
  sampled?: SampleStore
}

/**
 * A component's plane at the rows and columns a sampled decode reads: `values` holds them row by
 * row, `rowSlot`/`colSlot` give each plane row and column its place there (−1: not read), and
 * `blockRows`/`blockCols` say which block rows and columns hold one (the others are skipped).
 */
interface SampleStore {
  rowSlot: Int32Array
  colSlot: Int32Array
  blockRows: Uint8Array
  blockCols: Uint8Array
  cols: number
  values: Uint8Array
}

const u16 = (b: Uint8Array, i: number) => (b[i]! << 8) | b[i + 1]!

/**
 * The IDCT size of a component subsampled by `ratioH × ratioV` at luma's size `n`: chroma subsampled
 * alike both ways is transformed larger (up to 4 points: an 8-point one costs 8 times as much), so
 * that at 1/8 and 1/4 it needs no upsampling, like libjpeg's scaled chroma; otherwise replicated.
 */
const transformSize = (n: number, ratioH: number, ratioV: number) =>
  ratioH === ratioV && (ratioH === 2 || ratioH === 4) ? Math.min(4, n * ratioH) : n

/**
 * What decoding a `width × height` frame of these sampling factors at `1/scale` costs: its blocks
 * (every one is entropy-decoded, whatever the scale) and the bytes it allocates (the components'
 * planes and the RGBA output).
 */
export function scaledCost(
  width: number,
  height: number,
  sampling: readonly (readonly [number, number])[],
  scale: Scale,
): { blocks: number; bytes: number } {
  const n = 8 / scale
  // One component is coded block by block, whatever its factors say.
  const factors = sampling.length === 1 ? [[1, 1] as const] : sampling
  const maxH = Math.max(...factors.map(([h]) => h))
  const maxV = Math.max(...factors.map(([, v]) => v))
  const mcus = Math.ceil(width / (8 * maxH)) * Math.ceil(height / (8 * maxV))
  let blocks = 0
  let bytes = 4 * Math.ceil(width / scale) * Math.ceil(height / scale)
  for (const [h, v] of factors) {
    blocks += mcus * h * v
    bytes += mcus * h * v * transformSize(n, maxH / h, maxV / v) ** 2
  }
  return { blocks, bytes }
}

/** `C(u)/2 · cos((2m+1)uπ / 2N)`: the N-point inverse DCT of an 8-point DCT's first N coefficients, pixel centers at m. */
function basis(n: number): Float64Array {
  const table = new Float64Array(n * n)
  for (let m = 0; m < n; m++)
    for (let u = 0; u < n; u++)
      table[m * n + u] = (u === 0 ? Math.SQRT1_2 : 1) * 0.5 * Math.cos(((2 * m + 1) * u * Math.PI) / (2 * n))
  return table
}
const BASES: Record<number, Float64Array> = { 2: basis(2), 4: basis(4), 8: basis(8) }

/**
 * YCbCr to RGB by libjpeg-turbo's tables (jdcolor.c, which mozjpeg shares): 16-bit fixed point,
 * FIX(1.40200), FIX(1.77200), FIX(0.71414) and FIX(0.34414), so that a sampled decode's pixels are
 * the full decode's.
 */
const CR_R = new Int32Array(256)
const CB_B = new Int32Array(256)
const CR_G = new Int32Array(256)
const CB_G = new Int32Array(256)
for (let i = 0; i < 256; i++) {
  const x = i - 128
  CR_R[i] = (91881 * x + 32768) >> 16
  CB_B[i] = (116130 * x + 32768) >> 16
  // Kept unrounded to their sum (plus one half), as libjpeg does.
  CR_G[i] = -46802 * x
  CB_G[i] = -22554 * x + 32768
}

/**
 * Decodes a baseline JPEG at `1/scale` to RGBA of `scaledSize(width, height, scale)`. The caller
 * has read the header (headers.ts) and held the frame to the limits; 400 for data that does not
 * decode.
 */
export function decodeScaledJpeg(
  bytes: Uint8Array,
  scale: Scale,
  where: string,
): { width: number; height: number; rgba: Uint8Array } {
  const n = 8 / scale
  const { frame, components, rgb } = decodeFrame(bytes, where, n)
  const { width, height } = scaledSize(frame.width, frame.height, scale)
  return { width, height, rgba: toRgba(components, frame, n, width, height, rgb) }
}

/** Pixels of a full-size image at chosen rows and columns: each a sorted list of distinct indices. */
export interface SamplePoints {
  rows: Int32Array
  cols: Int32Array
}

/**
 * Whether a frame of these sampling factors is decoded sampled (decodeSampledJpeg): every component
 * at full size or subsampled 2×1 or 2×2, the upsamplings libjpeg smooths by the formulas followed
 * here (h2v1 and h2v2 "fancy" upsampling); one component always.
 */
export function samplable(sampling: readonly (readonly [number, number])[]): boolean {
  if (sampling.length === 1) return true
  const maxH = Math.max(...sampling.map(([h]) => h))
  const maxV = Math.max(...sampling.map(([, v]) => v))
  return sampling.every(([h, v]) => {
    const [rh, rv] = [maxH / h, maxV / v]
    return (rh === 1 && rv === 1) || (rh === 2 && (rv === 1 || rv === 2))
  })
}

/**
 * Decodes a baseline JPEG's pixels at `points` only: RGBA of `cols.length × rows.length`, pixel
 * (i, j) the full decode's pixel at row `rows[i]`, column `cols[j]`, as libjpeg (mozjpeg, the full
 * decode's codec) makes it — its inverse DCT at those points, its "fancy" chroma upsampling, its
 * YCbCr tables — to within a level where its integer IDCT rounds otherwise. A resize reads two rows
 * and two columns for each output pixel (preprocess.ts): for a 224×224 input of a 12 MP photo,
 * about 200 000 of its 12 million pixels. Every block is still entropy-decoded (the coefficients
 * are one stream), but only blocks holding a point are transformed, and only at its rows and
 * columns. The caller checks `samplable` first; 400 for data that does not decode.
 */
export function decodeSampledJpeg(
  bytes: Uint8Array,
  points: SamplePoints,
  where: string,
): { width: number; height: number; rgba: Uint8Array } {
  const { frame, components, rgb } = decodeFrame(bytes, where, 8, points)
  return { width: points.cols.length, height: points.rows.length, rgba: sampledRgba(components, frame, points, rgb) }
}

/** The markers and scans of a baseline JPEG, each block to N×N pixels, or at `points` only. */
function decodeFrame(bytes: Uint8Array, where: string, n: number, points?: SamplePoints) {
  const corrupt = (why: string) => badRequest(`${where}: the JPEG image is truncated or corrupt; ${why}`)
  const quant: (Float64Array | undefined)[] = []
  const dcTables: (Huffman | undefined)[] = []
  const acTables: (Huffman | undefined)[] = []
  let restartInterval = 0
  let frame:
    { width: number; height: number; maxH: number; maxV: number; mcusWide: number; mcusHigh: number } | undefined
  let components: Component[] = []
  let adobeTransform: number | undefined
  let at = 2
  for (;;) {
    if (at >= bytes.length) throw corrupt('it ends before its end-of-image marker')
    if (bytes[at] !== 0xff) throw corrupt(`byte ${at} is 0x${bytes[at]!.toString(16)} where a marker belongs`)
    while (bytes[at] === 0xff) at++
    const marker = bytes[at++]
    if (marker === undefined) throw corrupt('it ends inside a marker')
    if (marker === 0xd9) break
    if ((marker & 0xf8) === 0xd0 || marker === 0x01) continue
    if (at + 2 > bytes.length) throw corrupt('it ends inside a marker segment')
    const length = u16(bytes, at)
    if (length < 2 || at + length > bytes.length) throw corrupt(`a marker segment (byte ${at - 2}) runs past the end`)
    const body = bytes.subarray(at + 2, at + length)
    at += length
    if (marker === 0xdb) readQuant(body, quant, corrupt)
    else if (marker === 0xc4) readHuffman(body, dcTables, acTables, corrupt)
    else if (marker === 0xdd) {
      if (body.length < 2) throw corrupt('its restart interval segment is cut short')
      restartInterval = u16(body, 0)
    } else if (marker === 0xee && body.length >= 12 && String.fromCharCode(...body.subarray(0, 5)) === 'Adobe') {
      adobeTransform = body[11]
    } else if (marker === 0xc0 || marker === 0xc1) {
      ;({ frame, components } = readFrame(body, n, corrupt, points))
    } else if ((marker & 0xf0) === 0xc0 && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      throw corrupt('a frame this decoder does not serve') // decode.ts sends only SOF0/SOF1 frames here
    } else if (marker === 0xda) {
      if (!frame) throw corrupt('a scan before its frame header')
      at = decodeScan(bytes, at, body, frame, components, quant, dcTables, acTables, restartInterval, corrupt)
    }
  }
  if (!frame) throw corrupt('it has no frame header')
  // RGB components: an Adobe marker saying so, or the ids 'R', 'G', 'B' (libjpeg's jdapimin.c guesses the same way).
  const rgb =
    adobeTransform === 0 ||
    (adobeTransform === undefined &&
      components.length === 3 &&
      components[0]!.id === 0x52 &&
      components[1]!.id === 0x47 &&
      components[2]!.id === 0x42)
  return { frame, components, rgb }
}

function readQuant(body: Uint8Array, quant: (Float64Array | undefined)[], corrupt: (why: string) => Error): void {
  for (let i = 0; i < body.length;) {
    const precision = body[i]! >> 4
    const id = body[i]! & 15
    const size = precision ? 128 : 64
    if (id > 3 || precision > 1 || i + 1 + size > body.length) throw corrupt('a quantization table is malformed')
    const table = new Float64Array(64)
    for (let k = 0; k < 64; k++) table[ZIGZAG[k]!] = precision ? u16(body, i + 1 + 2 * k) : body[i + 1 + k]!
    quant[id] = table
    i += 1 + size
  }
}

function readHuffman(
  body: Uint8Array,
  dcTables: (Huffman | undefined)[],
  acTables: (Huffman | undefined)[],
  corrupt: (why: string) => Error,
): void {
  for (let i = 0; i < body.length;) {
    const kind = body[i]! >> 4
    const id = body[i]! & 15
    if (kind > 1 || id > 3 || i + 17 > body.length) throw corrupt('a Huffman table is malformed')
    const counts = body.subarray(i + 1, i + 17)
    const total = counts.reduce((a, b) => a + b, 0)
    if (total > 256 || i + 17 + total > body.length) throw corrupt('a Huffman table is malformed')
    const symbols = body.slice(i + 17, i + 17 + total)
    const table: Huffman = {
      lookup: new Uint16Array(1 << LOOKUP_BITS),
      skips: new Uint16Array(1 << LOOKUP_BITS),
      maxcode: new Int32Array(18).fill(-1),
      valoffset: new Int32Array(18),
      symbols,
    }
    // Canonical codes (ITU T.81 C.2), as jdhuff.c's jpeg_make_d_derived_tbl assigns them.
    let code = 0
    let index = 0
    for (let length = 1; length <= 16; length++) {
      const count = counts[length - 1]!
      table.valoffset[length] = index - code
      for (let c = 0; c < count; c++, code++, index++) {
        if (length <= LOOKUP_BITS) {
          const shift = LOOKUP_BITS - length
          const rs = symbols[index]!
          const size = rs & 15
          // A zero size is end-of-block unless the run is 15 (libjpeg's decode_mcu reads it so too).
          const skip = size ? ((length + size) << 8) | ((rs >> 4) + 1) : (length << 8) | (rs === 0xf0 ? 16 : 64)
          for (let fill = 0; fill < 1 << shift; fill++) {
            table.lookup[(code << shift) | fill] = (length << 8) | rs
            table.skips[(code << shift) | fill] = skip
          }
        }
      }
      if (count) table.maxcode[length] = code - 1
      // libjpeg refuses a table whose codes reach the all-ones code of a length (jdhuff.c), and so does this.
      if (code >= 1 << length) throw corrupt('a Huffman table assigns more codes than its lengths allow')
      code <<= 1
    }
    table.maxcode[17] = 0x7fffffff
    ;(kind ? acTables : dcTables)[id] = table
    i += 17 + total
  }
}

function readFrame(body: Uint8Array, n: number, corrupt: (why: string) => Error, points?: SamplePoints) {
  if (body.length < 6 || body[0] !== 8) throw corrupt('its frame header is not an 8-bit one')
  const height = u16(body, 1)
  const width = u16(body, 3)
  const count = body[5]!
  if ((count !== 1 && count !== 3) || body.length !== 6 + 3 * count || !width || !height)
    throw corrupt('its frame header is malformed')
  const sampling = []
  for (let c = 0; c < count; c++) {
    const hv = body[7 + 3 * c]!
    sampling.push({ id: body[6 + 3 * c]!, h: hv >> 4, v: hv & 15, quant: body[8 + 3 * c]! })
  }
  // A single component is coded block by block whatever its factors say (ITU T.81 A.2.2).
  if (count === 1) sampling[0]!.h = sampling[0]!.v = 1
  const maxH = Math.max(...sampling.map((c) => c.h))
  const maxV = Math.max(...sampling.map((c) => c.v))
  if (sampling.some((c) => c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4 || c.quant > 3))
    throw corrupt('a component has sampling factors outside 1–4')
  const mcusWide = Math.ceil(width / (8 * maxH))
  const mcusHigh = Math.ceil(height / (8 * maxV))
  const components: Component[] = sampling.map((c) => {
    const cn = transformSize(n, maxH / c.h, maxV / c.v)
    const blocksWide = mcusWide * c.h
    const blocksHigh = mcusHigh * c.v
    return {
      ...c,
      blocksWide,
      blocksHigh,
      n: points ? 8 : cn,
      plane: new Uint8Array(points ? 0 : blocksWide * blocksHigh * cn * cn),
      codedWide: Math.ceil((width * c.h) / maxH / 8),
      codedHigh: Math.ceil((height * c.v) / maxV / 8),
      sampled:
        points &&
        sampleStore(
          points,
          [maxH / c.h, maxV / c.v],
          [Math.ceil((width * c.h) / maxH), Math.ceil((height * c.v) / maxV)],
          [blocksWide, blocksHigh],
        ),
    }
  })
  return { frame: { width, height, maxH, maxV, mcusWide, mcusHigh }, components }
}

/**
 * The plane rows (or columns) of a component subsampled by `ratio` (1 or 2) that the image's rows
 * (or columns) `at` read: the same ones, or for each the chroma sample under it and the neighbour
 * libjpeg's fancy upsampling weighs with it (above or left of it for an even index, else below or
 * right), within the `length` samples the component has. Each gets its place in the store, in
 * order; `touched` marks the blocks holding one.
 */
function axisSlots(at: Int32Array, ratio: number, length: number, blocks: number) {
  const slot = new Int32Array(blocks * 8).fill(-1)
  const touched = new Uint8Array(blocks)
  for (const i of at) {
    const near = ratio === 1 ? i : i >> 1
    const far = ratio === 1 ? near : Math.min(length - 1, Math.max(0, i & 1 ? near + 1 : near - 1))
    slot[near] = slot[far] = 0
  }
  let count = 0
  for (let i = 0; i < slot.length; i++) {
    if (slot[i]! < 0) continue
    slot[i] = count++
    touched[i >> 3] = 1
  }
  return { slot, touched, count }
}

/** A component's store of the points read (see SampleStore), for a component subsampled by `ratioH × ratioV`. */
function sampleStore(
  points: SamplePoints,
  [ratioH, ratioV]: [number, number],
  [width, height]: [number, number],
  [blocksWide, blocksHigh]: [number, number],
): SampleStore {
  const rows = axisSlots(points.rows, ratioV, height, blocksHigh)
  const cols = axisSlots(points.cols, ratioH, width, blocksWide)
  return {
    rowSlot: rows.slot,
    colSlot: cols.slot,
    blockRows: rows.touched,
    blockCols: cols.touched,
    cols: cols.count,
    values: new Uint8Array(rows.count * cols.count),
  }
}

/**
 * Decodes one scan whose header is `body` and whose entropy-coded data starts at `start`; returns
 * where the data ends (its next marker other than RSTn).
 */
function decodeScan(
  bytes: Uint8Array,
  start: number,
  body: Uint8Array,
  frame: { maxH: number; maxV: number; mcusWide: number; mcusHigh: number },
  components: Component[],
  quant: (Float64Array | undefined)[],
  dcTables: (Huffman | undefined)[],
  acTables: (Huffman | undefined)[],
  restartInterval: number,
  corrupt: (why: string) => Error,
): number {
  const count = body[0]
  if (!count || count > 4 || body.length !== 4 + 2 * count) throw corrupt('a scan header is malformed')
  const scanned: Component[] = []
  for (let i = 0; i < count; i++) {
    const component = components.find((c) => c.id === body[1 + 2 * i])
    if (!component || scanned.includes(component)) throw corrupt('a scan names a component its frame does not have')
    component.dc = dcTables[body[2 + 2 * i]! >> 4]
    component.ac = acTables[body[2 + 2 * i]! & 15]
    if (!component.dc || !component.ac) throw corrupt('a scan uses a Huffman table it has not defined')
    scanned.push(component)
  }
  const [ss, se, a] = [body[1 + 2 * count], body[2 + 2 * count], body[3 + 2 * count]]
  if (ss !== 0 || se !== 63 || a !== 0) throw corrupt('a baseline scan codes part of the spectrum')
  const tables = scanned.map((c) => {
    const q = quant[c.quant]
    if (!q) throw corrupt('a component uses a quantization table it has not defined')
    return q
  })

  const bits = new BitReader(bytes, start, corrupt)
  const predictions = new Int32Array(scanned.length)
  const coefficients = new Float64Array(64)
  const columns = new Float64Array(64)
  const block = (c: number, row: number, col: number) => {
    const component = scanned[c]!
    if (component.n === 1) {
      // The DC alone: the block's mean, DC·q / 8 + 128.
      const value = (predictions[c]! += bits.dcOnly(component.dc!, component.ac!))
      const pixel = Math.round(value * tables[c]![0]! * 0.125) + 128
      component.plane[row * component.blocksWide + col] = pixel < 0 ? 0 : pixel > 255 ? 255 : pixel
      return
    }
    const store = component.sampled
    if (store && !(store.blockRows[row] && store.blockCols[col])) {
      // No point read in it: its DC carries the prediction on, its AC coefficients are skipped.
      predictions[c]! += bits.dcOnly(component.dc!, component.ac!)
      return
    }
    const value = (predictions[c]! += bits.dc(component.dc!))
    decodeBlock(bits, component, value, tables[c]!, row, col, coefficients, columns)
  }

  const { mcusWide, mcusHigh } = frame
  const single = scanned.length === 1 ? scanned[0]! : undefined
  // A scan of one component codes its blocks one by one, over the component's own size; otherwise MCU by MCU.
  const units = single ? single.codedWide * single.codedHigh : mcusWide * mcusHigh
  let restarts = 0
  for (let unit = 0; unit < units; unit++) {
    if (restartInterval && unit > 0 && unit % restartInterval === 0) {
      // A restart: the bits left in the byte are padding, then RSTn, then the predictions start over.
      bits.restart(restarts, unit)
      restarts++
      predictions.fill(0)
    }
    if (single) {
      const row = Math.floor(unit / single.codedWide)
      block(0, row, unit - row * single.codedWide)
      continue
    }
    const mcuRow = Math.floor(unit / mcusWide)
    const mcuCol = unit - mcuRow * mcusWide
    for (let c = 0; c < scanned.length; c++) {
      const { h, v } = scanned[c]!
      for (let y = 0; y < v; y++) for (let x = 0; x < h; x++) block(c, mcuRow * v + y, mcuCol * h + x)
    }
  }
  bits.end()
  let pos = bits.pos
  // To the next marker that is not a restart (the header walk found the same end).
  while (pos + 1 < bytes.length && !(bytes[pos] === 0xff && bytes[pos + 1] !== 0 && (bytes[pos + 1]! & 0xf8) !== 0xd0))
    pos++
  return Math.min(pos, bytes.length)
}

/**
 * The entropy-coded data's bits, most significant first: `buffer` holds `count` unread bits at its
 * bottom; stuffed zero bytes are skipped, and past a marker it reads zeros, counted in `past` so
 * that a block read from them is refused (truncated data).
 */
class BitReader {
  buffer = 0
  count = 0
  past = 0
  constructor(
    readonly bytes: Uint8Array,
    public pos: number,
    readonly corrupt: (why: string) => Error,
  ) {}

  fill(): void {
    const bytes = this.bytes
    while (this.count <= 24) {
      let byte = 0
      const pos = this.pos
      if (pos < bytes.length && (bytes[pos] !== 0xff || bytes[pos + 1] === 0)) {
        byte = bytes[pos]!
        this.pos = pos + (byte === 0xff ? 2 : 1)
      } else this.past++
      this.buffer = (this.buffer << 8) | byte
      this.count += 8
    }
  }

  /** The next Huffman-coded symbol. */
  symbol(table: Huffman): number {
    if (this.count < 16) this.fill()
    const entry = table.lookup[(this.buffer >>> (this.count - LOOKUP_BITS)) & ((1 << LOOKUP_BITS) - 1)]!
    if (entry) {
      this.count -= entry >> 8
      return entry & 0xff
    }
    let length = LOOKUP_BITS + 1
    let code = (this.buffer >>> (this.count - length)) & ((1 << length) - 1)
    while (code > table.maxcode[length]!) {
      if (++length > 16) throw this.corrupt('its entropy-coded data holds a code no Huffman table defines')
      code = (this.buffer >>> (this.count - length)) & ((1 << length) - 1)
    }
    this.count -= length
    return table.symbols[code + table.valoffset[length]!] ?? 0
  }

  /** The next `size` bits as a signed coefficient (ITU T.81 F.2.2.1, EXTEND). */
  receive(size: number): number {
    if (this.count < size) this.fill()
    this.count -= size
    const value = (this.buffer >>> this.count) & ((1 << size) - 1)
    return value < 1 << (size - 1) ? value - (1 << size) + 1 : value
  }

  skip(size: number): void {
    if (this.count < size) this.fill()
    this.count -= size
  }

  /**
   * A block at 1/8 scale: its DC difference, returned, and its AC coefficients skipped. The loop of
   * the phone-photo path: the bit state in locals, and an AC symbol and its value's bits consumed
   * in one lookup (at most 9 + 15 bits, and at least 25 are held).
   */
  dcOnly(dcTable: Huffman, acTable: Huffman): number {
    const skips = acTable.skips
    let buffer = this.buffer
    let count = this.count
    if (count < 25) {
      this.count = count
      this.buffer = buffer
      this.fill()
      buffer = this.buffer
      count = this.count
    }
    let difference = 0
    const entry = dcTable.lookup[(buffer >>> (count - LOOKUP_BITS)) & ((1 << LOOKUP_BITS) - 1)]!
    const size = entry & 0xff
    // A code and its value within the 25 bits held: read here; otherwise (long code, 11-bit value) the general way.
    if (entry && size <= 11 && (entry >> 8) + size <= count) {
      count -= entry >> 8
      if (size) {
        count -= size
        const value = (buffer >>> count) & ((1 << size) - 1)
        difference = value < 1 << (size - 1) ? value - (1 << size) + 1 : value
      }
    } else {
      this.buffer = buffer
      this.count = count
      difference = this.dc(dcTable)
      buffer = this.buffer
      count = this.count
    }
    for (let k = 1; k < 64;) {
      if (count < 25) {
        this.count = count
        this.buffer = buffer
        this.fill()
        buffer = this.buffer
        count = this.count
      }
      const entry = skips[(buffer >>> (count - LOOKUP_BITS)) & ((1 << LOOKUP_BITS) - 1)]!
      if (entry) {
        count -= entry >> 8
        k += entry & 0xff
        continue
      }
      this.buffer = buffer
      this.count = count
      const rs = this.symbol(acTable)
      const size = rs & 15
      if (size) {
        k += (rs >> 4) + 1
        this.skip(size)
      } else k += rs === 0xf0 ? 16 : 64
      buffer = this.buffer
      count = this.count
    }
    this.buffer = buffer
    this.count = count
    return difference
  }

  /**
   * A block's AC coefficients, dequantized by `q` into `coefficients` (natural order, zeroed by the
   * caller): every block but a 1/8 one's, scaled or sampled. The bit state in locals, as
   * dcOnly; a code longer than LOOKUP_BITS the general way. Returns which rows (bits 0–7) and
   * columns (bits 8–15) of frequencies hold a coefficient besides the DC.
   */
  acInto(table: Huffman, coefficients: Float64Array, q: Float64Array): number {
    const lookup = table.lookup
    let buffer = this.buffer
    let count = this.count
    let held = 0
    for (let k = 1; k < 64; k++) {
      if (count < 25) {
        this.count = count
        this.buffer = buffer
        this.fill()
        buffer = this.buffer
        count = this.count
      }
      const entry = lookup[(buffer >>> (count - LOOKUP_BITS)) & ((1 << LOOKUP_BITS) - 1)]!
      let rs: number
      if (entry) {
        count -= entry >> 8
        rs = entry & 0xff
      } else {
        this.buffer = buffer
        this.count = count
        rs = this.symbol(table)
        if (this.count < 16) this.fill()
        buffer = this.buffer
        count = this.count
      }
      const size = rs & 15
      if (size) {
        k += rs >> 4
        count -= size
        const bits = (buffer >>> count) & ((1 << size) - 1)
        // Past the 64th coefficient (corrupt data) the value is read and dropped, as decodeBlock does.
        if (k < 64) {
          const at = ZIGZAG[k]!
          coefficients[at] = (bits < 1 << (size - 1) ? bits - (1 << size) + 1 : bits) * q[at]!
          held |= (1 << (at >> 3)) | (256 << (at & 7))
        }
      } else if (rs === 0xf0) k += 15
      else break
    }
    this.buffer = buffer
    this.count = count
    return held
  }

  /** A DC difference. */
  dc(table: Huffman): number {
    const size = this.symbol(table)
    if (size > 11) throw this.corrupt('a DC difference is larger than 8-bit data allows')
    return size ? this.receive(size) : 0
  }

  /** Refuses data that ended (at a marker) before what was decoded from it. */
  end(): void {
    if (this.past > 0 && this.past * 8 > this.count)
      throw this.corrupt('its entropy-coded data ends before its last block')
  }

  /** Restart `index`: the bits left in the byte are padding, then RSTn must follow. */
  restart(index: number, unit: number): void {
    this.end()
    this.buffer = this.count = this.past = 0
    const bytes = this.bytes
    while (bytes[this.pos] === 0xff && bytes[this.pos + 1] === 0xff) this.pos++
    if (bytes[this.pos] !== 0xff || bytes[this.pos + 1] !== (0xd0 | (index & 7)))
      throw this.corrupt(`restart marker ${index & 7} is missing after ${unit} units of its scan`)
    this.pos += 2
  }
}

/**
 * One block's AC coefficients, then its N×N pixels (N > 1) into the component's plane: those of the
 * N×N low frequencies kept, dequantized, and the rest skipped.
 */
function decodeBlock(
  bits: BitReader,
  component: Component,
  dc: number,
  q: Float64Array,
  row: number,
  col: number,
  coefficients: Float64Array,
  columns: Float64Array,
): void {
  const { ac, n, plane } = component
  coefficients.fill(0)
  coefficients[0] = dc * q[0]!
  const held = bits.acInto(ac!, coefficients, q) | 0x101
  if (component.sampled) sampleBlock(coefficients, held & 0xff, held >> 8, component.sampled, row, col, columns)
  else
    idct(
      coefficients,
      held & 0xff,
      n,
      columns,
      plane,
      (row * component.blocksWide * n + col) * n,
      component.blocksWide * n,
    )
}

/**
 * The 8×8 inverse DCT of a block's coefficients at the points of it `store` holds, +128, rounded,
 * clamped, as the full transform gives them: for each row read, the row as a cosine series across
 * (`across[u] = Σ_v C(v)/2·cos((2y+1)vπ/16)·F(v, u)`), then that series at each column read. The
 * sums stop at the highest row and column of frequencies holding a coefficient (bit masks); a block of
 * its DC alone is one value.
 */
function sampleBlock(
  coefficients: Float64Array,
  rows: number,
  cols: number,
  store: SampleStore,
  row: number,
  col: number,
  across: Float64Array,
) {
  const b = BASES[8]!
  const { rowSlot, colSlot, cols: stride, values } = store
  const flat = rows === 1 && cols === 1 ? clampPixel(Math.round(coefficients[0]! * 0.125) + 128) : -1
  // Frequencies past the highest row and column holding a coefficient add nothing: the sums stop there.
  const vTop = 32 - Math.clz32(rows)
  const uTop = 32 - Math.clz32(cols)
  for (let y = 0; y < 8; y++) {
    const slot = rowSlot[row * 8 + y]!
    if (slot < 0) continue
    const line = slot * stride
    if (flat >= 0) {
      for (let x = 0; x < 8; x++) {
        const at = colSlot[col * 8 + x]!
        if (at >= 0) values[line + at] = flat
      }
      continue
    }
    for (let u = 0; u < uTop; u++) {
      let sum = 0
      for (let v = 0; v < vTop; v++) sum += b[y * 8 + v]! * coefficients[v * 8 + u]!
      across[u] = sum
    }
    for (let x = 0; x < 8; x++) {
      const at = colSlot[col * 8 + x]!
      if (at < 0) continue
      let sum = 0
      for (let u = 0; u < uTop; u++) sum += b[x * 8 + u]! * across[u]!
      values[line + at] = clampPixel(Math.round(sum) + 128)
    }
  }
}

const clampPixel = (pixel: number) => (pixel < 0 ? 0 : pixel > 255 ? 255 : pixel)

/**
 * The N-point 2-D inverse DCT of the first N×N of a block's (dequantized, natural-order) coefficients,
 * +128, clamped, into `plane` at `offset` with row stride `stride`. The 8-point transform's 1/8
 * normalization becomes, at N points, the same sums over fewer terms (see BASES): pixel centers of the
 * reduced block sample the block's continuous cosine series. `rows` marks the rows of frequencies
 * holding a coefficient (acInto); the others add nothing.
 */
function idct(
  coefficients: Float64Array,
  rows: number,
  n: number,
  columns: Float64Array,
  plane: Uint8Array,
  offset: number,
  stride: number,
): void {
  const b = BASES[n]!
  // Rows first: columns[u·n + m] = Σ_v C(v)/2·cos(…)·F(u, v); a row of zeros (most of them) stays zero.
  for (let u = 0; u < n; u++) {
    const any = rows & (1 << u)
    for (let m = 0; m < n; m++) {
      let sum = 0
      if (any) for (let v = 0; v < n; v++) sum += b[m * n + v]! * coefficients[u * 8 + v]!
      columns[u * n + m] = sum
    }
  }
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      let sum = 0
      for (let u = 0; u < n; u++) sum += b[y * n + u]! * columns[u * n + x]!
      plane[offset + y * stride + x] = clampPixel(Math.round(sum) + 128)
    }
  }
}

/** The components' planes to RGBA of `width × height`: each plane sampled at its pixel under each output pixel (replication), then to RGB. */
function toRgba(
  components: Component[],
  frame: { maxH: number; maxV: number },
  n: number,
  width: number,
  height: number,
  rgb: boolean,
): Uint8Array {
  const rgba = new Uint8Array(width * height * 4)
  // Plane pixels per output pixel: (cn·h) / (n·maxH) across, likewise down.
  const maps = components.map((c) => {
    const xs = new Int32Array(width)
    for (let x = 0; x < width; x++) xs[x] = Math.floor((x * c.n * c.h) / (n * frame.maxH))
    const ys = new Int32Array(height)
    for (let y = 0; y < height; y++) ys[y] = Math.floor((y * c.n * c.v) / (n * frame.maxV)) * c.blocksWide * c.n
    return { xs, ys, plane: c.plane }
  })
  const [a, b, c] = maps as [(typeof maps)[0], (typeof maps)[0]?, (typeof maps)[0]?]
  for (let y = 0, o = 0; y < height; y++) {
    const ya = a.ys[y]!
    if (!b || !c) {
      for (let x = 0; x < width; x++, o += 4) {
        const g = a.plane[ya + a.xs[x]!]!
        rgba[o] = rgba[o + 1] = rgba[o + 2] = g
        rgba[o + 3] = 255
      }
      continue
    }
    const yb = b.ys[y]!
    const yc = c.ys[y]!
    for (let x = 0; x < width; x++, o += 4) {
      const p0 = a.plane[ya + a.xs[x]!]!
      const p1 = b.plane[yb + b.xs[x]!]!
      const p2 = c.plane[yc + c.xs[x]!]!
      if (rgb) {
        rgba[o] = p0
        rgba[o + 1] = p1
        rgba[o + 2] = p2
      } else {
        const r = p0 + CR_R[p2]!
        const g = p0 + ((CB_G[p1]! + CR_G[p2]!) >> 16)
        const bl = p0 + CB_B[p1]!
        rgba[o] = r < 0 ? 0 : r > 255 ? 255 : r
        rgba[o + 1] = g < 0 ? 0 : g > 255 ? 255 : g
        rgba[o + 2] = bl < 0 ? 0 : bl > 255 ? 255 : bl
      }
      rgba[o + 3] = 255
    }
  }
  return rgba
}

/**
 * A component's values at the image's points, upsampled as libjpeg-turbo's jdsample.c does by
 * default ("fancy" upsampling): 2×1 subsampled, ¾ of the nearer sample and ¼ of the farther
 * (h2v1_fancy_upsample); 2×2, the same both ways in sixteenths (h2v2_fancy_upsample); with the
 * same roundings, and the edge sample standing in past the edge.
 */
function upsampled(
  component: Component,
  frame: { width: number; height: number; maxH: number; maxV: number },
  { rows, cols }: SamplePoints,
): Uint8Array {
  const { rowSlot, colSlot, cols: stride, values } = component.sampled!
  const ratioH = frame.maxH / component.h
  const ratioV = frame.maxV / component.v
  const width = Math.ceil((frame.width * component.h) / frame.maxH)
  const height = Math.ceil((frame.height * component.v) / frame.maxV)
  const out = new Uint8Array(rows.length * cols.length)
  const far = (i: number, length: number) => Math.min(length - 1, Math.max(0, i & 1 ? (i >> 1) + 1 : (i >> 1) - 1))
  for (let i = 0, o = 0; i < rows.length; i++) {
    const y = rows[i]!
    const near = (ratioV === 1 ? rowSlot[y]! : rowSlot[y >> 1]!) * stride
    const other = ratioV === 1 ? near : rowSlot[far(y, height)]! * stride
    for (let j = 0; j < cols.length; j++, o++) {
      const x = cols[j]!
      if (ratioH === 1) {
        out[o] = values[near + colSlot[x]!]!
        continue
      }
      const a = colSlot[x >> 1]!
      const b = colSlot[far(x, width)]!
      if (ratioV === 1) out[o] = (3 * values[near + a]! + values[near + b]! + (x & 1 ? 2 : 1)) >> 2
      else {
        const sumA = 3 * values[near + a]! + values[other + a]!
        const sumB = 3 * values[near + b]! + values[other + b]!
        out[o] = (3 * sumA + sumB + (x & 1 ? 7 : 8)) >> 4
      }
    }
  }
  return out
}

/** The components at the points to RGBA, as toRgba converts them. */
function sampledRgba(
  components: Component[],
  frame: { width: number; height: number; maxH: number; maxV: number },
  points: SamplePoints,
  rgb: boolean,
): Uint8Array {
  const count = points.rows.length * points.cols.length
  const rgba = new Uint8Array(count * 4)
  const [a, b, c] = components.map((component) => upsampled(component, frame, points)) as [
    Uint8Array,
    Uint8Array?,
    Uint8Array?,
  ]
  for (let i = 0, o = 0; i < count; i++, o += 4) {
    const p0 = a[i]!
    rgba[o + 3] = 255
    if (!b || !c) {
      rgba[o] = rgba[o + 1] = rgba[o + 2] = p0
      continue
    }
    const p1 = b[i]!
    const p2 = c[i]!
    if (rgb) {
      rgba[o] = p0
      rgba[o + 1] = p1
      rgba[o + 2] = p2
      continue
    }
    const r = p0 + CR_R[p2]!
    const g = p0 + ((CB_G[p1]! + CR_G[p2]!) >> 16)
    const bl = p0 + CB_B[p1]!
    rgba[o] = r < 0 ? 0 : r > 255 ? 255 : r
    rgba[o + 1] = g < 0 ? 0 : g > 255 ? 255 : g
    rgba[o + 2] = bl < 0 ? 0 : bl > 255 ? 255 : bl
  }
  return rgba
}
