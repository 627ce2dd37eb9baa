// Measures the image codecs considered for decoding in the Worker (docs/images.md): decode time of a
// 12-megapixel and a 640×480 JPEG, and the wasm memory each leaves behind. Node runs the same V8
// and the same .wasm files as workerd. Usage: node scripts/measure-codecs.mjs
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const require = createRequire(import.meta.url)
const pkg = (name) => dirname(require.resolve(`${name}/package.json`))
const wasm = (name, file) => new WebAssembly.Module(readFileSync(join(pkg(name), file)))

const { default: decodeJpeg, init: initJpeg } = await import('@jsquash/jpeg/decode.js')
const { default: encodeJpeg, init: initJpegEnc } = await import('@jsquash/jpeg/encode.js')
const { default: decodePng, init: initPng } = await import('@jsquash/png/decode.js')
await initJpeg(wasm('@jsquash/jpeg', 'codec/dec/mozjpeg_dec.wasm'))
await initJpegEnc(wasm('@jsquash/jpeg', 'codec/enc/mozjpeg_enc.wasm'))
await initPng(wasm('@jsquash/png', 'codec/pkg/squoosh_png_bg.wasm'))
const photon = await import('@cf-wasm/photon')

/** A real photograph (skimage's rocket, public domain) tiled to `width`×`height` and encoded as JPEG at quality 85. */
async function jpegOf(width, height) {
  const photo = await decodeJpeg(readFileSync('test/fixtures/models/_images/rocket.jpg'))
  const data = new Uint8ClampedArray(width * height * 4)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const from = ((y % photo.height) * photo.width + (x % photo.width)) * 4
      data.set(photo.data.subarray(from, from + 4), (y * width + x) * 4)
    }
  }
  return new Uint8Array(await encodeJpeg({ data, width, height, colorSpace: 'srgb' }, { quality: 85 }))
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

async function time(decode, bytes, runs) {
  await decode(bytes) // warm: compile tiers, grow the heap once
  const ms = []
  for (let i = 0; i < runs; i++) {
    const started = performance.now()
    await decode(bytes)
    ms.push(performance.now() - started)
  }
  return median(ms).toFixed(1)
}

const fastPng = await import('fast-png')

/** The same photo tiled to `width`×`height` as an RGB PNG (fast-png's encoder, default compression). */
async function pngOf(width, height) {
  const photo = await decodeJpeg(readFileSync('test/fixtures/models/_images/rocket.jpg'))
  const data = new Uint8Array(width * height * 3)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const from = ((y % photo.height) * photo.width + (x % photo.width)) * 4
      data.set(photo.data.subarray(from, from + 3), (y * width + x) * 3)
    }
  }
  return fastPng.encode({ width, height, data, channels: 3, depth: 8 })
}

const pngDecoders = {
  '@jsquash/png (Rust png, wasm)': async (bytes) => (await decodePng(bytes)).data.length,
  'fast-png (JavaScript)': async (bytes) => fastPng.decode(bytes).data.length,
}

const decoders = {
  '@jsquash/jpeg (mozjpeg)': async (bytes) => (await decodeJpeg(bytes)).data.length,
  '@cf-wasm/photon (image-rs)': async (bytes) => {
    const image = photon.PhotonImage.new_from_byteslice(bytes)
    const length = image.get_raw_pixels().length
    image.free()
    return length
  },
}

const only = process.argv[2]
const large = await jpegOf(4000, 3000)
const small = await jpegOf(640, 480)
if (!only) console.log(`12 MP JPEG: ${large.byteLength} bytes; 640×480 JPEG: ${small.byteLength} bytes; node ${process.version}`)
for (const [name, decode] of Object.entries(decoders)) {
  if (only && !name.includes(only)) continue
  const before = process.memoryUsage().rss
  const smallMs = await time(decode, small, 20)
  const largeMs = await time(decode, large, 5)
  // Resident memory the decoder added and kept: its wasm heap grows to the largest image and never shrinks.
  const grew = ((process.memoryUsage().rss - before) / 2 ** 20).toFixed(0)
  console.log(`${name}: 640×480 ${smallMs} ms, 12 MP ${largeMs} ms, resident memory +${grew} MB`)
}

const largePng = await pngOf(4000, 3000)
const smallPng = await pngOf(640, 480)
if (!only) console.log(`12 MP PNG: ${largePng.byteLength} bytes; 640×480 PNG: ${smallPng.byteLength} bytes`)
for (const [name, decode] of Object.entries(pngDecoders)) {
  if (only && !name.includes(only)) continue
  const before = process.memoryUsage().rss
  const smallMs = await time(decode, smallPng, 20)
  const largeMs = await time(decode, largePng, 5)
  const grew = ((process.memoryUsage().rss - before) / 2 ** 20).toFixed(0)
  console.log(`${name}: 640×480 ${smallMs} ms, 12 MP ${largeMs} ms, resident memory +${grew} MB`)
}
