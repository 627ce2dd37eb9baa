// Crafted images that attacked the decoders (issue 24), made from scratch or from a real photo, for
// test/images-hostile.test.ts, test/e2e/images-hostile.test.ts and docs/images.md's figures.
// Plain JavaScript with no Node import, so the workerd tests use the same generators.
// Usage: node scripts/dev/hostile-images.mjs [dir]  (writes every file to dir, default /tmp/hostile-images)

const u32 = (n) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]
const u16 = (n) => [n >>> 8, n & 255]
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) out.set(p, (at += p.length) - p.length)
  return out
}

const CRC = Array.from({ length: 256 }, (_, n) => {
  for (let k = 0; k < 8; k++) n = n & 1 ? 0xedb88320 ^ (n >>> 1) : n >>> 1
  return n >>> 0
})
const crc32 = (bytes) => (bytes.reduce((c, b) => CRC[(c ^ b) & 255] ^ (c >>> 8), 0xffffffff) ^ 0xffffffff) >>> 0

/** One PNG chunk: length, type, data, CRC. */
export function pngChunk(type, data) {
  const body = concat(new TextEncoder().encode(type), data)
  return concat(Uint8Array.from(u32(data.length)), body, Uint8Array.from(u32(crc32(body))))
}
const SIGNATURE = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
/** IHDR data: colorType 0 gray, 2 RGB, 6 RGBA. */
const ihdr = (width, height, depth, colorType) =>
  Uint8Array.from([...u32(width), ...u32(height), depth, colorType, 0, 0, 0])
const png = (...chunks) => concat(SIGNATURE, ...chunks, pngChunk('IEND', new Uint8Array(0)))

/** zlib (RFC 1950) of `total` zero bytes, fed in 1 MiB pieces, by the platform's CompressionStream. */
export async function deflateZeros(total, { rowBytes } = {}) {
  const stream = new CompressionStream('deflate')
  const writer = stream.writable.getWriter()
  const piece = new Uint8Array(rowBytes ?? 1 << 20)
  void (async () => {
    for (let left = total; left > 0; left -= piece.length)
      await writer.write(left >= piece.length ? piece : piece.subarray(0, left))
    await writer.close()
  })()
  return new Uint8Array(await new Response(stream.readable).arrayBuffer())
}

/** 93 bytes: IHDR 1×1 gray, then IHDR 8192×8192 RGBA; a reader of the first IHDR sees one pixel. */
export async function pngDoubleIhdr() {
  return png(
    pngChunk('IHDR', ihdr(1, 1, 8, 0)),
    pngChunk('IHDR', ihdr(8192, 8192, 8, 6)),
    pngChunk('IDAT', await deflateZeros(2)),
  )
}

/**
 * The zlib stream of 256 MiB of zeros that both PNG bombs carry, deflated once per process: about half
 * a second of a core each time (the bombs' copies of it are their own).
 */
let bombStream
const bomb = () => (bombStream ??= deflateZeros(256 << 20))

/** A 1000×1000 gray PNG (1,001,000 bytes of rows) whose IDAT inflates to 256 MiB: ~261 KB. */
export async function pngIdatBomb() {
  return png(pngChunk('IHDR', ihdr(1000, 1000, 8, 0)), pngChunk('IDAT', await bomb()))
}

/** The same 256 MiB in an iCCP profile, beside a valid 1000×1000 image. */
export async function pngIccpBomb() {
  const profile = concat(new TextEncoder().encode('icc\0'), Uint8Array.of(0), await bomb())
  return png(
    pngChunk('IHDR', ihdr(1000, 1000, 8, 0)),
    pngChunk('iCCP', profile),
    pngChunk('IDAT', await deflateZeros(1000 * 1001)),
  )
}

/** A flat `width`×`height` PNG of 16-bit RGBA (8 bytes a pixel): tiny on the wire, 2× an 8-bit image decoded. */
export async function png16(width, height) {
  return png(
    pngChunk('IHDR', ihdr(width, height, 16, 6)),
    pngChunk('IDAT', await deflateZeros(height * (1 + width * 8))),
  )
}

/**
 * A valid baseline JPEG of flat mid-gray, built by hand: every 8×8 block is DC difference 0 and
 * end-of-block, one bit each, so 8192×8192 is 256 KB. `components` 4 with an Adobe marker is CMYK
 * (transform 0) or YCCK (transform 2), as print workflows write them.
 */
export function flatJpeg(width, height, components = 1, adobeTransform) {
  const segment = (marker, ...body) => Uint8Array.from([0xff, marker, ...u16(body.length + 2), ...body])
  const ids = Array.from({ length: components }, (_, i) => i + 1)
  const blocks = Math.ceil(width / 8) * Math.ceil(height / 8) * components
  return concat(
    Uint8Array.of(0xff, 0xd8),
    adobeTransform === undefined
      ? new Uint8Array(0)
      : segment(0xee, ...new TextEncoder().encode('Adobe'), 0, 100, 0, 0, 0, 0, adobeTransform),
    segment(0xdb, 0, ...new Array(64).fill(1)),
    segment(0xc0, 8, ...u16(height), ...u16(width), components, ...ids.flatMap((id) => [id, 0x11, 0])),
    segment(0xc4, 0x00, 1, ...new Array(15).fill(0), 0), // DC: one code, "0", for difference category 0
    segment(0xc4, 0x10, 1, ...new Array(15).fill(0), 0), // AC: one code, "0", for end-of-block
    segment(0xda, components, ...ids.flatMap((id) => [id, 0]), 0, 63, 0),
    new Uint8Array(Math.ceil((blocks * 2) / 8)),
    Uint8Array.of(0xff, 0xd9),
  )
}

/**
 * `FF D8 FF FF FF E1 <len>`: libjpeg skips the fill bytes (FF FF) and reads an APP1 of `len` bytes;
 * a reader that takes FF FF for a marker takes FF E1 for its length and lands on a fake 1×1 SOF
 * inside that APP1. The real frame after it is 8192×8192.
 */
export function jpegFillByteDesync(size = 8192) {
  const app1 = new Uint8Array(0xfff0)
  // At file offset 4 + 0xFFE1, i.e. app1 offset 4 + 0xFFE1 − 8: FF C0, length 17, 8 bits, 1×1, 3 components.
  app1.set([0xff, 0xc0, 0, 17, 8, 0, 1, 0, 1, 3], 4 + 0xffe1 - 8)
  const real = flatJpeg(size, size)
  return concat(Uint8Array.of(0xff, 0xd8, 0xff, 0xff, 0xff, 0xe1, ...u16(app1.length + 2)), app1, real.subarray(2))
}

/**
 * A progressive JPEG (a real photo's) with its smallest scan repeated `times` more times before EOI:
 * libjpeg decodes every one, each a pass over the image's coefficients.
 */
export function jpegScanBomb(progressive, times = 1000) {
  const starts = []
  for (let i = 2; i + 1 < progressive.length; i++)
    if (progressive[i] === 0xff && progressive[i + 1] === 0xda) starts.push(i)
  const end = progressive.length - 2 // FF D9
  // A scan runs to the next marker that is not a restart marker (FF D0–D7) nor a stuffed FF 00.
  const scanEnd = (from) => {
    for (let i = from + 2; i + 1 < end; i++)
      if (progressive[i] === 0xff && progressive[i + 1] !== 0 && (progressive[i + 1] & 0xf8) !== 0xd0) return i
    return end
  }
  // Each scan with the tables defined since the one before it (its Huffman tables), so every copy decodes alike.
  const scans = starts.map((s, k) => progressive.subarray(k === 0 ? s : scanEnd(starts[k - 1]), scanEnd(s)))
  const smallest = scans.reduce((a, b) => (b.length < a.length ? b : a))
  return concat(progressive.subarray(0, end), ...new Array(times).fill(smallest), Uint8Array.of(0xff, 0xd9))
}

/** Every crafted file, by file name; `progressive` is a progressive JPEG photo (chelsea.jpg: mozjpeg writes progressive by default). */
export async function hostileImages(progressive) {
  return {
    'png-double-ihdr.png': await pngDoubleIhdr(),
    'png-idat-bomb.png': await pngIdatBomb(),
    'png-iccp-bomb.png': await pngIccpBomb(),
    'png-rgba16-2800.png': await png16(2800, 2800),
    'jpeg-fill-byte-desync.jpg': jpegFillByteDesync(),
    'jpeg-scan-bomb.jpg': jpegScanBomb(progressive),
    'jpeg-cmyk.jpg': flatJpeg(640, 480, 4, 0),
    'jpeg-ycck.jpg': flatJpeg(640, 480, 4, 2),
  }
}

if (typeof process !== 'undefined' && process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const { mkdirSync, readFileSync, writeFileSync } = await import('node:fs')
  const dir = process.argv[2] ?? '/tmp/hostile-images'
  mkdirSync(dir, { recursive: true })
  const files = await hostileImages(readFileSync('test/fixtures/models/_images/chelsea.jpg'))
  for (const [name, bytes] of Object.entries(files)) {
    writeFileSync(`${dir}/${name}`, bytes)
    console.log(`${dir}/${name}: ${bytes.length} bytes`)
  }
}
