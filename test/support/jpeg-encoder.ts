// A baseline JPEG encoder for the tests, for what the encoders in node_modules do not write: chosen
// sampling factors (4:2:2, 4:1:1…), restart intervals, grayscale. ITU T.81 Annex K's tables, a float
// DCT. The decoders under test are checked against mozjpeg's decode of what it writes, not against it.

const ZIGZAG = [
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
  35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47,
  55, 62, 63,
]
// Annex K.1, natural order.
const LUMA_Q = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51,
  87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101,
  72, 92, 95, 98, 112, 100, 103, 99,
]
const CHROMA_Q = [
  17,
  18,
  24,
  47,
  99,
  99,
  99,
  99,
  18,
  21,
  26,
  66,
  99,
  99,
  99,
  99,
  24,
  26,
  56,
  99,
  99,
  99,
  99,
  99,
  47,
  66,
  99,
  99,
  99,
  99,
  99,
  99,
  ...new Array(32).fill(99),
]
// Annex K.3: code counts by length 1–16, then symbols.
const DC_LUMA = {
  counts: [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
  symbols: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
}
const DC_CHROMA = {
  counts: [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
  symbols: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
}
// prettier-ignore
const AC_LUMA = { counts: [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d], symbols: [
  0x01,0x02,0x03,0x00,0x04,0x11,0x05,0x12,0x21,0x31,0x41,0x06,0x13,0x51,0x61,0x07,0x22,0x71,0x14,0x32,0x81,0x91,0xa1,0x08,
  0x23,0x42,0xb1,0xc1,0x15,0x52,0xd1,0xf0,0x24,0x33,0x62,0x72,0x82,0x09,0x0a,0x16,0x17,0x18,0x19,0x1a,0x25,0x26,0x27,0x28,
  0x29,0x2a,0x34,0x35,0x36,0x37,0x38,0x39,0x3a,0x43,0x44,0x45,0x46,0x47,0x48,0x49,0x4a,0x53,0x54,0x55,0x56,0x57,0x58,0x59,
  0x5a,0x63,0x64,0x65,0x66,0x67,0x68,0x69,0x6a,0x73,0x74,0x75,0x76,0x77,0x78,0x79,0x7a,0x83,0x84,0x85,0x86,0x87,0x88,0x89,
  0x8a,0x92,0x93,0x94,0x95,0x96,0x97,0x98,0x99,0x9a,0xa2,0xa3,0xa4,0xa5,0xa6,0xa7,0xa8,0xa9,0xaa,0xb2,0xb3,0xb4,0xb5,0xb6,
  0xb7,0xb8,0xb9,0xba,0xc2,0xc3,0xc4,0xc5,0xc6,0xc7,0xc8,0xc9,0xca,0xd2,0xd3,0xd4,0xd5,0xd6,0xd7,0xd8,0xd9,0xda,0xe1,0xe2,
  0xe3,0xe4,0xe5,0xe6,0xe7,0xe8,0xe9,0xea,0xf1,0xf2,0xf3,0xf4,0xf5,0xf6,0xf7,0xf8,0xf9,0xfa] }
// prettier-ignore
const AC_CHROMA = { counts: [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77], symbols: [
  0x00,0x01,0x02,0x03,0x11,0x04,0x05,0x21,0x31,0x06,0x12,0x41,0x51,0x07,0x61,0x71,0x13,0x22,0x32,0x81,0x08,0x14,0x42,0x91,
  0xa1,0xb1,0xc1,0x09,0x23,0x33,0x52,0xf0,0x15,0x62,0x72,0xd1,0x0a,0x16,0x24,0x34,0xe1,0x25,0xf1,0x17,0x18,0x19,0x1a,0x26,
  0x27,0x28,0x29,0x2a,0x35,0x36,0x37,0x38,0x39,0x3a,0x43,0x44,0x45,0x46,0x47,0x48,0x49,0x4a,0x53,0x54,0x55,0x56,0x57,0x58,
  0x59,0x5a,0x63,0x64,0x65,0x66,0x67,0x68,0x69,0x6a,0x73,0x74,0x75,0x76,0x77,0x78,0x79,0x7a,0x82,0x83,0x84,0x85,0x86,0x87,
  0x88,0x89,0x8a,0x92,0x93,0x94,0x95,0x96,0x97,0x98,0x99,0x9a,0xa2,0xa3,0xa4,0xa5,0xa6,0xa7,0xa8,0xa9,0xaa,0xb2,0xb3,0xb4,
  0xb5,0xb6,0xb7,0xb8,0xb9,0xba,0xc2,0xc3,0xc4,0xc5,0xc6,0xc7,0xc8,0xc9,0xca,0xd2,0xd3,0xd4,0xd5,0xd6,0xd7,0xd8,0xd9,0xda,
  0xe2,0xe3,0xe4,0xe5,0xe6,0xe7,0xe8,0xe9,0xea,0xf2,0xf3,0xf4,0xf5,0xf6,0xf7,0xf8,0xf9,0xfa] }

type Table = { counts: number[]; symbols: number[] }

/** Code and length of each symbol (Annex C). */
function codes(table: Table): Map<number, [number, number]> {
  const out = new Map<number, [number, number]>()
  let code = 0
  let k = 0
  for (let length = 1; length <= 16; length++) {
    for (let i = 0; i < table.counts[length - 1]!; i++) out.set(table.symbols[k++]!, [code++, length])
    code <<= 1
  }
  return out
}

export interface JpegOptions {
  /** Luma's sampling factors [h, v]; chroma is 1×1. Default [2, 2] (4:2:0). */
  sampling?: [number, number]
  /** One component, the luma of the pixels. */
  grayscale?: boolean
  /** MCUs between restart markers; 0 for none. */
  restartInterval?: number
  /** 1–100, libjpeg's scaling of the Annex K tables. */
  quality?: number
}

/** RGBA pixels as a baseline (SOF0) JPEG. */
export function encodeJpeg(rgba: Uint8Array, width: number, height: number, options: JpegOptions = {}): Uint8Array {
  const [sh, sv] = options.grayscale ? [1, 1] : (options.sampling ?? [2, 2])
  const quality = options.quality ?? 90
  const factor = quality < 50 ? 5000 / quality : 200 - 2 * quality
  const scaleQ = (q: number[]) => q.map((v) => Math.min(255, Math.max(1, Math.floor((v * factor + 50) / 100))))
  const quants = [scaleQ(LUMA_Q), scaleQ(CHROMA_Q)]
  const mcuW = 8 * sh
  const mcuH = 8 * sv
  const mcusX = Math.ceil(width / mcuW)
  const mcusY = Math.ceil(height / mcuH)
  // Full-resolution planes, padded by edge replication.
  const planeW = mcusX * mcuW
  const planeH = mcusY * mcuH
  const planes = (options.grayscale ? [0] : [0, 1, 2]).map(() => new Float64Array(planeW * planeH))
  for (let y = 0; y < planeH; y++) {
    for (let x = 0; x < planeW; x++) {
      const o = (Math.min(y, height - 1) * width + Math.min(x, width - 1)) * 4
      const [r, g, b] = [rgba[o]!, rgba[o + 1]!, rgba[o + 2]!]
      planes[0]![y * planeW + x] = 0.299 * r + 0.587 * g + 0.114 * b
      if (planes.length === 3) {
        planes[1]![y * planeW + x] = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
        planes[2]![y * planeW + x] = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
      }
    }
  }
  const components = planes.map((plane, c) => ({ plane, h: c ? 1 : sh, v: c ? 1 : sv, q: quants[c ? 1 : 0]! }))
  const dc = [codes(DC_LUMA), codes(DC_CHROMA)]
  const ac = [codes(AC_LUMA), codes(AC_CHROMA)]
  const cos = Array.from({ length: 64 }, (_, i) => Math.cos(((2 * (i >> 3) + 1) * (i & 7) * Math.PI) / 16))

  const out: number[] = []
  let buffer = 0
  let count = 0
  const put = (code: number, length: number) => {
    for (let i = length - 1; i >= 0; i--) {
      buffer = (buffer << 1) | ((code >> i) & 1)
      if (++count === 8) {
        out.push(buffer)
        if (buffer === 0xff) out.push(0)
        buffer = count = 0
      }
    }
  }
  const flush = () => {
    while (count) put(1, 1)
  }
  const sizeOf = (v: number) => (v === 0 ? 0 : 32 - Math.clz32(Math.abs(v)))
  const bitsOf = (v: number, size: number) => (v < 0 ? v + (1 << size) - 1 : v)

  const block = new Float64Array(64)
  const predictions = [0, 0, 0]
  const encodeBlock = (c: number, x0: number, y0: number, step: [number, number]) => {
    const { plane, q } = components[c]!
    // The block's samples, each the mean of the `step` box it covers (chroma downsampling), minus 128.
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        let sum = 0
        for (let dy = 0; dy < step[1]; dy++)
          for (let dx = 0; dx < step[0]; dx++) sum += plane[(y0 + y * step[1] + dy) * planeW + x0 + x * step[0] + dx]!
        block[y * 8 + x] = sum / (step[0] * step[1]) - 128
      }
    }
    const coefficients = new Array<number>(64)
    for (let v = 0; v < 8; v++) {
      for (let u = 0; u < 8; u++) {
        let sum = 0
        for (let y = 0; y < 8; y++)
          for (let x = 0; x < 8; x++) sum += block[y * 8 + x]! * cos[x * 8 + u]! * cos[y * 8 + v]!
        const cu = u ? 1 : Math.SQRT1_2
        const cv = v ? 1 : Math.SQRT1_2
        coefficients[v * 8 + u] = Math.round((0.25 * cu * cv * sum) / q[v * 8 + u]!)
      }
    }
    const t = c ? 1 : 0
    const diff = coefficients[0]! - predictions[c]!
    predictions[c] = coefficients[0]!
    const size = sizeOf(diff)
    put(...dc[t]!.get(size)!)
    if (size) put(bitsOf(diff, size), size)
    let run = 0
    for (let k = 1; k < 64; k++) {
      const value = coefficients[ZIGZAG[k]!]!
      if (value === 0) {
        run++
        continue
      }
      while (run > 15) {
        put(...ac[t]!.get(0xf0)!)
        run -= 16
      }
      const s = sizeOf(value)
      put(...ac[t]!.get((run << 4) | s)!)
      put(bitsOf(value, s), s)
      run = 0
    }
    if (run) put(...ac[t]!.get(0)!)
  }

  const segments: number[] = [0xff, 0xd8]
  const segment = (marker: number, body: number[]) =>
    segments.push(0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 255, ...body)
  segment(0xdb, [0, ...ZIGZAG.map((z) => quants[0]![z]!)])
  if (components.length === 3) segment(0xdb, [1, ...ZIGZAG.map((z) => quants[1]![z]!)])
  segment(0xc0, [
    8,
    height >> 8,
    height & 255,
    width >> 8,
    width & 255,
    components.length,
    ...components.flatMap((c, i) => [i + 1, (c.h << 4) | c.v, i ? 1 : 0]),
  ])
  const tables: [number, Table][] = [
    [0x00, DC_LUMA],
    [0x10, AC_LUMA],
  ]
  if (components.length === 3) tables.push([0x01, DC_CHROMA], [0x11, AC_CHROMA])
  for (const [id, table] of tables) segment(0xc4, [id, ...table.counts, ...table.symbols])
  const restart = options.restartInterval ?? 0
  if (restart) segment(0xdd, [restart >> 8, restart & 255])
  segment(0xda, [components.length, ...components.flatMap((_, i) => [i + 1, i ? 0x11 : 0x00]), 0, 63, 0])
  let restarts = 0
  for (let m = 0; m < mcusX * mcusY; m++) {
    if (restart && m > 0 && m % restart === 0) {
      flush()
      out.push(0xff, 0xd0 | (restarts++ & 7))
      predictions.fill(0)
    }
    const mx = m % mcusX
    const my = Math.floor(m / mcusX)
    for (let c = 0; c < components.length; c++) {
      const { h, v } = components[c]!
      const step: [number, number] = [sh / h, sv / v]
      for (let by = 0; by < v; by++)
        for (let bx = 0; bx < h; bx++) encodeBlock(c, mx * mcuW + bx * 8 * step[0], my * mcuH + by * 8 * step[1], step)
    }
  }
  flush()
  return Uint8Array.from([...segments, ...out, 0xff, 0xd9])
}
