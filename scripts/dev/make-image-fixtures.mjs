import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
const require = createRequire(import.meta.url)
const pkg = (n) => dirname(require.resolve(`${n}/package.json`))
const wasm = (n, f) => new WebAssembly.Module(readFileSync(join(pkg(n), f)))
const png = await import('fast-png')
const { default: encodeJpeg, init: ij } = await import('@jsquash/jpeg/encode.js')
const { default: encodeWebp, init: iw } = await import('@jsquash/webp/encode.js')
await ij(wasm('@jsquash/jpeg', 'codec/enc/mozjpeg_enc.wasm'))
await iw(wasm('@jsquash/webp', 'codec/enc/webp_enc.wasm'))
const dir = 'test/fixtures/models/_images/'
const chelsea = png.decode(readFileSync(dir + 'chelsea.png'))
console.log(chelsea.width, chelsea.height, chelsea.channels, chelsea.depth)
// a 160x106 crop-free downsample by 2 (nearest) of chelsea as a small JPEG for fuzzing
const w = 150,
  h = 100
const data = new Uint8ClampedArray(w * h * 4)
for (let y = 0; y < h; y++)
  for (let x = 0; x < w; x++) {
    const s = (y * 3 * chelsea.width + x * 3) * chelsea.channels,
      d = (y * w + x) * 4
    data[d] = chelsea.data[s]
    data[d + 1] = chelsea.data[s + 1]
    data[d + 2] = chelsea.data[s + 2]
    data[d + 3] = 255
  }
writeFileSync(
  dir + 'chelsea-small.jpg',
  new Uint8Array(await encodeJpeg({ data, width: w, height: h }, { quality: 80 })),
)
const full = new Uint8ClampedArray(chelsea.width * chelsea.height * 4)
for (let p = 0; p < chelsea.width * chelsea.height; p++) {
  full.set(chelsea.data.subarray(p * 3, p * 3 + 3), p * 4)
  full[p * 4 + 3] = 255
}
writeFileSync(
  dir + 'chelsea-lossless.webp',
  new Uint8Array(await encodeWebp({ data: full, width: chelsea.width, height: chelsea.height }, { lossless: 1 })),
)
writeFileSync(
  dir + 'chelsea.jpg',
  new Uint8Array(await encodeJpeg({ data: full, width: chelsea.width, height: chelsea.height }, { quality: 90 })),
)
