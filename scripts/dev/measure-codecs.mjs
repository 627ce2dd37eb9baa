// Measures the image codecs considered for decoding in the Worker (docs/images.md): decode time of a
// 12-megapixel and a 640×480 JPEG, and the wasm memory each leaves behind. Node runs the same V8
// and the same .wasm files as workerd. Usage: node scripts/dev/measure-codecs.mjs
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

/** A real photograph (skimage's rocket, public domain) tiled to `width`×`height`, as `channels`-byte pixels. */
async function tiled(width, height, channels) {
  const photo = await decodeJpeg(readFileSync('test/fixtures/models/_images/rocket.jpg'))
  const data = new Uint8ClampedArray(width * height * channels)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const from = ((y % photo.height) * photo.width + (x % photo.width)) * 4
      data.set(photo.data.subarray(from, from + channels), (y * width + x) * channels)
    }
  }
  return data
}

/** The tiled photo as a JPEG at quality 85. */
const jpegOf = async (width, height) =>
  new Uint8Array(
    await encodeJpeg({ data: await tiled(width, height, 4), width, height, colorSpace: 'srgb' }, { quality: 85 }),
  )

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

/** The tiled photo as an RGB PNG (fast-png's encoder, default compression). */
const pngOf = async (width, height) =>
  fastPng.encode({ width, height, data: new Uint8Array((await tiled(width, height, 3)).buffer), channels: 3, depth: 8 })

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

/** Times each decoder of `group` on a 640×480 and a 12 MP image of `format`; `only` picks decoders by name. */
async function measure(format, group, make) {
  const large = await make(4000, 3000)
  const small = await make(640, 480)
  if (!only)
    console.log(
      `12 MP ${format}: ${large.byteLength} bytes; 640×480 ${format}: ${small.byteLength} bytes; node ${process.version}`,
    )
  for (const [name, decode] of Object.entries(group)) {
    if (only && !name.includes(only)) continue
    const before = process.memoryUsage().rss
    const smallMs = await time(decode, small, 20)
    const largeMs = await time(decode, large, 5)
    // Resident memory the decoder added and kept: a wasm heap grows to the largest image and never shrinks.
    const grew = ((process.memoryUsage().rss - before) / 2 ** 20).toFixed(0)
    console.log(`${name}: 640×480 ${smallMs} ms, 12 MP ${largeMs} ms, resident memory +${grew} MB`)
  }
}

await measure('JPEG', decoders, jpegOf)
await measure('PNG', pngDecoders, pngOf)
