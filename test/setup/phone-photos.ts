// 12-megapixel "phone photos" for the tests and the bench, made in Node from the fixture photographs:
// the 4:3 center of a real photo upscaled bilinearly to 4032×3024, then written by mozjpeg
// (@jsquash/jpeg's encoder) as a phone writes it: baseline, 4:2:0, quality 90. No synthetic grain:
// noise the photo never had would make the full decode's answer depend on which noisy pixels its
// resize happens to sample, not on the photo.
// Deterministic; made once and kept in node_modules/.cache (an encode takes seconds).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import encode, { init } from '@jsquash/jpeg/encode.js'
import { decode as decodePng } from 'fast-png'
import jpeg from 'jpeg-js'

const root = resolve(import.meta.dirname, '../..')
/** A phone camera's 12 MP frame. */
export const PHONE_SIZE = { width: 4032, height: 3024 }
/** The fixture photos they are made from (test/fixtures/models/_images/), and the names they get. */
export const PHONE_PHOTOS = {
  'phone-chelsea.jpg': 'chelsea.jpg',
  'phone-rocket.jpg': 'rocket.jpg',
  'phone-camera.jpg': 'camera.png',
}

/** A fixture photo as RGBA. */
function rgbaOf(source: string): { width: number; height: number; data: Uint8Array } {
  const bytes = readFileSync(join(root, 'test/fixtures/models/_images', source))
  if (!source.endsWith('.png')) return jpeg.decode(bytes, { useTArray: true })
  const png = decodePng(bytes)
  const data = new Uint8Array(png.width * png.height * 4)
  for (let i = 0; i < png.width * png.height; i++) {
    for (let k = 0; k < 3; k++) data[i * 4 + k] = png.data[i * png.channels + (png.channels < 3 ? 0 : k)]!
    data[i * 4 + 3] = 255
  }
  return { width: png.width, height: png.height, data }
}

let ready: Promise<void> | undefined

/** `source` (a fixture JPEG) as a 12 MP baseline 4:2:0 JPEG. */
async function phonePhoto(source: string): Promise<Uint8Array> {
  ready ??= (async () => {
    const wasm = readFileSync(join(root, 'node_modules/@jsquash/jpeg/codec/enc/mozjpeg_enc.wasm'))
    // The node tsconfig's libs have no WebAssembly; Node has.
    const { WebAssembly: wasmApi } = globalThis as unknown as {
      WebAssembly: { compile(bytes: Uint8Array): Promise<never> }
    }
    await init(await wasmApi.compile(wasm))
  })()
  await ready
  const src = rgbaOf(source)
  // The largest 4:3 region at the center.
  const cropW = Math.min(src.width, Math.round((src.height * 4) / 3))
  const cropH = Math.round((cropW * 3) / 4)
  const x0 = (src.width - cropW) / 2
  const y0 = (src.height - cropH) / 2
  const { width, height } = PHONE_SIZE
  const out = new Uint8ClampedArray(width * height * 4)
  // Each column's two source columns and weight, computed once rather than per row and channel
  // (12 M pixels: this loop was half the photos' first-run CPU); the same arithmetic, the same bytes.
  const xa = new Int32Array(width)
  const xb = new Int32Array(width)
  const fx = new Float64Array(width)
  for (let x = 0; x < width; x++) {
    const sx = Math.max(0, x0 + ((x + 0.5) * cropW) / width - 0.5)
    xa[x] = Math.floor(sx)
    xb[x] = Math.min(src.width - 1, xa[x]! + 1)
    fx[x] = sx - xa[x]!
  }
  const data = src.data
  // Each source row interpolated across once, rather than again for each of the ~8 output rows it
  // serves (a fifth of the resize's CPU): the same arithmetic on the same numbers, the same bytes.
  const across = (row: number, into: Float64Array) => {
    const base = row * src.width
    for (let x = 0; x < width; x++) {
      const a = (base + xa[x]!) * 4
      const b = (base + xb[x]!) * 4
      const f = fx[x]!
      for (let k = 0; k < 3; k++) {
        const left = data[a + k]!
        into[x * 3 + k] = left + (data[b + k]! - left) * f
      }
    }
  }
  let upper = new Float64Array(width * 3)
  let lower = new Float64Array(width * 3)
  let upperRow = -1
  let lowerRow = -1
  for (let y = 0; y < height; y++) {
    const sy = Math.max(0, y0 + ((y + 0.5) * cropH) / height - 0.5)
    const ya = Math.floor(sy)
    const yb = Math.min(src.height - 1, ya + 1)
    const fy = sy - ya
    if (ya !== upperRow) {
      // Moving down one source row: the lower row becomes the upper one.
      if (ya === lowerRow) [upper, lower, lowerRow] = [lower, upper, -1]
      else across(ya, upper)
      upperRow = ya
    }
    if (yb !== lowerRow) {
      if (yb === upperRow) lower.set(upper)
      else across(yb, lower)
      lowerRow = yb
    }
    for (let i = 0, o = y * width * 4; i < width * 3; i += 3, o += 4) {
      const r = upper[i]!
      const g = upper[i + 1]!
      const b = upper[i + 2]!
      out[o] = r + (lower[i]! - r) * fy
      out[o + 1] = g + (lower[i + 1]! - g) * fy
      out[o + 2] = b + (lower[i + 2]! - b) * fy
      out[o + 3] = 255
    }
  }
  const encoded = await encode(
    { data: out, width, height, colorSpace: 'srgb' } as unknown as Parameters<typeof encode>[0],
    {
      quality: 90,
      baseline: true,
      progressive: false,
      optimize_coding: true,
      chroma_subsample: 2,
      auto_subsample: false,
    },
  )
  return new Uint8Array(encoded)
}

/** Writes the phone photos into `dir` (made once, then copied from node_modules/.cache/warmserve-phone-photos). */
export async function writePhonePhotos(dir: string): Promise<void> {
  const cache = join(root, 'node_modules/.cache/warmserve-phone-photos')
  mkdirSync(cache, { recursive: true })
  for (const [name, source] of Object.entries(PHONE_PHOTOS)) {
    const cached = join(cache, name)
    if (!existsSync(cached)) writeFileSync(cached, await phonePhoto(source))
    writeFileSync(join(dir, name), readFileSync(cached))
  }
}
