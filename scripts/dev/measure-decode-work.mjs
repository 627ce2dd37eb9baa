// Measures what MAX_DECODE_WORK bounds (docs/images.md): mozjpeg decode time of JPEGs at the work
// bound, in Node (the same V8 and .wasm as workerd). Usage: node scripts/dev/measure-decode-work.mjs
import { readFileSync } from 'node:fs'
import { flatJpeg, jpegScanBomb } from './hostile-images.mjs'

const wasm = (file) => new WebAssembly.Module(readFileSync(`node_modules/@jsquash/jpeg/codec/${file}`))
const { default: decode, init } = await import('@jsquash/jpeg/decode.js')
const { default: encode, init: initEncode } = await import('@jsquash/jpeg/encode.js')
await init(wasm('dec/mozjpeg_dec.wasm'), { printErr: () => {} })
await initEncode(wasm('enc/mozjpeg_enc.wasm'))

/** scikit-image's rocket (public domain) tiled to width×height, as a progressive JPEG (mozjpeg's default). */
async function photo(width, height) {
  const rocket = await decode(readFileSync('test/fixtures/models/_images/rocket.jpg'))
  const data = new Uint8ClampedArray(width * height * 4)
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      data.set(
        rocket.data.subarray(
          ((y % rocket.height) * rocket.width + (x % rocket.width)) * 4,
          ((y % rocket.height) * rocket.width + (x % rocket.width)) * 4 + 4,
        ),
        (y * width + x) * 4,
      )
  return new Uint8Array(await encode({ data, width, height }, { quality: 85 }))
}
const scans = (bytes) => bytes.reduce((n, b, i) => n + (b === 0xff && bytes[i + 1] === 0xda ? 1 : 0), 0)

async function time(name, bytes) {
  const runs = []
  for (let i = 0; i < 5; i++) {
    const started = performance.now()
    await decode(bytes).catch(() => {})
    runs.push(performance.now() - started)
  }
  runs.sort((a, b) => a - b)
  console.log(
    `${name}: ${bytes.length} bytes, ${scans(bytes)} scans, median ${runs[2].toFixed(0)} ms (min ${runs[0].toFixed(0)}, max ${runs[4].toFixed(0)})`,
  )
}

await time('baseline 2000×1500 (flat)', flatJpeg(2000, 1500, 3))
const big = await photo(2000, 1500)
await time('progressive photo 2000×1500', big)
await time(
  'progressive photo 2000×1500, a scan repeated to 13 scans (40 M pixel-passes)',
  jpegScanBomb(big, 13 - scans(big)),
)
const small = await photo(640, 625)
await time('progressive photo 640×625', small)
await time(
  'progressive photo 640×625, a scan repeated to 100 scans (40 M pixel-passes)',
  jpegScanBomb(small, 100 - scans(small)),
)
