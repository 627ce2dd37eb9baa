// Issue 25, item 3: phone photos. A baseline JPEG is decoded at the smallest DCT scale that still
// covers the model's input (src/protocols/images/jpeg-scaled.ts), checked against mozjpeg's full
// decode box-downscaled, on real photographs (test/fixtures/models/_images/) and on 12 MP phone
// photos made from them (test/setup/phone-photos.ts); the limits then hold the decoded size.
import { env } from 'cloudflare:workers'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { memoryGate, setMemoryGate, uncounted } from '../src/cache/memory-gate'
import { ApiError } from '../src/core/errors'
import type { Covers, ImageLimits, Pixels, PointsOf } from '../src/protocols/images/decode'
import { decodeImage, decoderHeapBytes, MAX_DECODE_WORK } from '../src/protocols/images/decode'
import type { Scale } from '../src/protocols/images/jpeg-scaled'
import { decodeSampledJpeg, decodeScaledJpeg, samplable } from '../src/protocols/images/jpeg-scaled'
import { imageTensor, samplePoints } from '../src/protocols/images/preprocess'
import { post } from './support/helpers'
import { encodeJpeg } from './support/jpeg-encoder'
import { freshWasmIsolate } from './support/wasm-helpers'
// @ts-expect-error: a plain .mjs module without type declarations
import { flatJpeg } from '../scripts/dev/hostile-images.mjs'
import { base64, photo } from './support/photos'

const MiB = 1024 * 1024

/** Limits that let mozjpeg decode a 12 MP photo whole, for the reference. */
const roomy = (): ImageLimits => ({
  maxBytes: 8 * MiB,
  maxPixels: 16_000_000,
  maxDecodeBytes: 256 * MiB,
  requestPixels: { left: 16_000_000, limit: 16_000_000 },
  // Every baseline JPEG through the scaled decoder where a scale covers (the Worker decodes whole up to MAX_IMAGE_PIXELS).
  wholePixels: 0,
})
const defaults = (): ImageLimits => ({ ...roomy(), maxPixels: 4_000_000, maxDecodeBytes: 16 * MiB })

/**
 * mozjpeg's full-size decode (no `covers`: the path every JPEG took before). The test's own, so kept
 * out of the memory budget the Worker's requests share (12 MP whole is past it, as intended).
 */
async function fullDecode(bytes: Uint8Array): Promise<Pixels> {
  const gate = memoryGate()
  setMemoryGate(uncounted)
  try {
    return await decodeImage(bytes, roomy(), 'reference')
  } finally {
    setMemoryGate(gate)
  }
}

/** Mean and largest absolute difference, over RGB, between `scaled` and `full` averaged over `scale × scale` boxes (clipped at the edges). */
function difference(full: Pixels, scaled: Pixels, scale: number): { mean: number; max: number } {
  expect([scaled.width, scaled.height]).toEqual([Math.ceil(full.width / scale), Math.ceil(full.height / scale)])
  let sum = 0
  let max = 0
  let transparent = 0
  const { rgba, width } = full
  // Each box read once for its three channels (a pass per channel took three times the reads of a 12 MP decode).
  for (let y = 0; y < scaled.height; y++) {
    for (let x = 0; x < scaled.width; x++) {
      let [r, g, b, count] = [0, 0, 0, 0]
      for (let yy = y * scale; yy < Math.min(full.height, (y + 1) * scale); yy++)
        for (let xx = x * scale, at = (yy * width + xx) * 4; xx < Math.min(width, (x + 1) * scale); xx++, at += 4) {
          r += rgba[at]!
          g += rgba[at + 1]!
          b += rgba[at + 2]!
          count++
        }
      const pixel = (y * scaled.width + x) * 4
      const totals = [r, g, b]
      for (let k = 0; k < 3; k++) {
        const d = Math.abs(totals[k]! / count - scaled.rgba[pixel + k]!)
        sum += d
        if (d > max) max = d
      }
      if (scaled.rgba[pixel + 3] !== 255) transparent++
    }
  }
  // One expectation for the alpha of all pixels: one per pixel took most of the test's time.
  expect(transparent, 'pixels whose alpha is not 255').toBe(0)
  return { mean: sum / (scaled.width * scaled.height * 3), max }
}

/** The points a stretched resize to `size` ([height, width]) reads. */
const pointsFor =
  (size: [number, number]): PointsOf =>
  (width, height) =>
    samplePoints(width, height, { size, fit: 'stretch' })

/** `covers` for a model input of `size` ([height, width]), stretched. */
const covering =
  ([h, w]: [number, number]): Covers =>
  (width, height) =>
    width >= w && height >= h

/** Chroma sampling factors by their usual names. */
const SAMPLINGS = { '4:2:0': [2, 2], '4:2:2': [2, 1], '4:4:4': [1, 1], '4:1:1': [4, 1], '4:4:0': [1, 2] } as const

/** rocket.jpg's pixels cropped to 637×421 (partial MCUs), made once per file. */
let cropped: Promise<{ rgba: Uint8Array; width: number; height: number }> | undefined
/** Each case's encoding and its full decode, made once per file: two tests read the same cases. */
const encoded = new Map<string, { bytes: Uint8Array; full: Pixels }>()
/** Each photo's full decode, made once per file: up to three tests compare against the same 12 MP decode. */
const fullDecodes = new Map<string, Promise<Pixels>>()
// The files of the workers project share one isolate: nothing of this one's is kept for the next.
afterAll(() => {
  encoded.clear()
  fullDecodes.clear()
  cropped = undefined
})

/** The photo `name` (test/fixtures/models/_images/) and its full decode. */
async function photoDecoded(name: string): Promise<{ bytes: Uint8Array; full: Pixels }> {
  const bytes = await photo(name)
  let full = fullDecodes.get(name)
  if (full === undefined) {
    full = fullDecode(bytes)
    fullDecodes.set(name, full)
  }
  return { bytes, full: await full }
}

/**
 * rocket.jpg's pixels, cropped to 637×421 (partial MCUs), written again by test/support/jpeg-encoder.ts in each of
 * `samplings`, then grayscale and with restart intervals; each with mozjpeg's full decode.
 */
async function* encodings(samplings: (keyof typeof SAMPLINGS)[]) {
  cropped ??= (async () => {
    const { full: source } = await photoDecoded('rocket.jpg')
    const [width, height] = [637, 421]
    const rgba = new Uint8Array(width * height * 4)
    for (let y = 0; y < height; y++)
      rgba.set(source.rgba.subarray(y * source.width * 4, (y * source.width + width) * 4), y * width * 4)
    return { rgba, width, height }
  })()
  const { rgba, width, height } = await cropped
  const cases: [string, Parameters<typeof encodeJpeg>[3]][] = [
    ...samplings.map((name): [string, Parameters<typeof encodeJpeg>[3]] => [name, { sampling: [...SAMPLINGS[name]] }]),
    ['grayscale', { grayscale: true }],
    ['4:2:0, restart every 7 MCUs', { sampling: [2, 2], restartInterval: 7 }],
    ['4:4:4, restart every MCU', { sampling: [1, 1], restartInterval: 1 }],
  ]
  for (const [name, options] of cases) {
    if (!encoded.has(name)) {
      const bytes = encodeJpeg(rgba, width, height, { ...options, quality: 90 })
      encoded.set(name, { bytes, full: await fullDecode(bytes) })
    }
    yield { name, ...encoded.get(name)! }
  }
}

describe('a baseline JPEG decoded at 1/2, 1/4 and 1/8 is the full decode box-downscaled', () => {
  it.each([
    // A 12 MP phone photo (4:2:0, mozjpeg quality 90), and a real photograph as its camera wrote it (4:4:4, 640×427).
    ['phone-chelsea.jpg', 1, 8],
    ['rocket.jpg', 1.5, 64],
  ])(
    '%s: mean difference ≤ %d levels, largest ≤ %d (sharp edges: a reduced IDCT is not a box filter)',
    async (name, mean, max) => {
      let t = performance.now()
      const { bytes, full } = await photoDecoded(name)
      console.log(`TIMING full ${name} ${(performance.now() - t).toFixed(0)}`)
      for (const scale of [2, 4, 8] as Scale[]) {
        t = performance.now()
        const sc = decodeScaledJpeg(bytes, scale, name)
        console.log(`TIMING scaled ${scale} ${(performance.now() - t).toFixed(0)}`)
        t = performance.now()
        const found = difference(full, sc, scale)
        console.log(`TIMING diff ${scale} ${(performance.now() - t).toFixed(0)}`)
        console.log(`${name} at 1/${scale}: mean ${found.mean.toFixed(2)}, max ${found.max.toFixed(1)}`)
        expect(found.mean, `1/${scale}`).toBeLessThanOrEqual(mean)
        expect(found.max, `1/${scale}`).toBeLessThanOrEqual(max)
      }
    },
    120_000,
  )

  it('decodes every sampling, grayscale, restart intervals and partial MCUs as mozjpeg does', async () => {
    let t = performance.now()
    for await (const { name, bytes, full } of encodings(['4:2:0', '4:2:2', '4:4:4', '4:1:1', '4:4:0'])) {
      console.log(`TIMING encode ${name} ${(performance.now() - t).toFixed(0)}`)
      for (const scale of [2, 4, 8] as Scale[]) {
        t = performance.now()
        const sc = decodeScaledJpeg(bytes, scale, name)
        const found = difference(full, sc, scale)
        console.log(`TIMING scaled+diff ${scale} ${(performance.now() - t).toFixed(0)}`)
        // Chroma subsampled one way only is replicated, not interpolated as libjpeg's fancy upsampling does.
        expect(found.mean, `${name} at 1/${scale}`).toBeLessThanOrEqual(3)
        expect(found.max, `${name} at 1/${scale}`).toBeLessThanOrEqual(100)
      }
      t = performance.now()
    }
  }, 120_000)

  it('chooses the smallest scale that still covers the input, crop included, and counts the decoded size', async () => {
    const bytes = await photo('phone-chelsea.jpg')
    const at = async (covers?: Covers) => {
      const pixels = await decodeImage(bytes, roomy(), 'phone', covers)
      return [pixels.width, pixels.height]
    }
    expect(await at(covering([224, 224]))).toEqual([504, 378])
    expect(await at(covering([512, 512]))).toEqual([1008, 756])
    // A center crop of 4:3 to a wide input keeps the full width but a strip of the height.
    expect(await at((w, h) => w >= 640 && (w * 9) / 16 >= 360 && h >= 360)).toEqual([1008, 756])
    expect(await at(covering([1000, 1000]))).toEqual([2016, 1512])
    // Past 1/2, the whole image, by mozjpeg (and past MAX_IMAGE_PIXELS under the defaults).
    await expect(decodeImage(bytes, defaults(), 'phone', covering([2000, 2000]))).rejects.toThrow(
      /the JPEG is 4032×3024, 12192768 pixels, more than the limit of 4000000 \(MAX_IMAGE_PIXELS\)/,
    )
    // The request's pixels count the decoded size: three 1/8 decodes of 190,512 pixels fit 600,000.
    const limits = { ...defaults(), requestPixels: { left: 600_000, limit: 600_000 } }
    for (let i = 0; i < 3; i++) await decodeImage(bytes, limits, 'phone', covering([224, 224]))
    await expect(decodeImage(bytes, limits, 'phone', covering([224, 224]))).rejects.toThrow(/MAX_REQUEST_IMAGE_PIXELS/)
  }, 120_000)
})

/** How far a sampled decode is from the full decode at its points: the share of values (RGB) that differ, and the largest difference. */
function offPoints(full: Pixels, sampled: Pixels, rows: Int32Array, cols: Int32Array): { off: number; max: number } {
  expect([sampled.width, sampled.height]).toEqual([cols.length, rows.length])
  // How many values differ by each amount, and the pixels not opaque.
  const histogram = new Uint32Array(256)
  let transparent = 0
  rows.forEach((row, i) =>
    cols.forEach((col, j) => {
      const at = (i * cols.length + j) * 4
      const from = (row * full.width + col) * 4
      for (let k = 0; k < 3; k++) histogram[Math.abs(sampled.rgba[at + k]! - full.rgba[from + k]!)]!++
      if (sampled.rgba[at + 3] !== 255) transparent++
    }),
  )
  expect(transparent, 'pixels whose alpha is not 255').toBe(0)
  return { off: 1 - histogram[0]! / (rows.length * cols.length * 3), max: histogram.findLastIndex((n) => n > 0) }
}

const every = (n: number) => Int32Array.from({ length: n }, (_, i) => i)

describe("a baseline JPEG decoded at a resize's points is mozjpeg's full decode there", () => {
  // The IDCT at the points is exact where libjpeg's integer one rounds otherwise: a level or two, on a few values.
  it.each(['phone-chelsea.jpg', 'phone-rocket.jpg', 'phone-camera.jpg'])(
    '%s at the points of a 224×224 resize (stretched, and center-cropped)',
    async (name) => {
      const { bytes, full } = await photoDecoded(name)
      for (const fit of ['stretch', 'center-crop'] as const) {
        const { rows, cols } = samplePoints(full.width, full.height, { size: [224, 224], fit })
        expect(rows.length).toBeLessThanOrEqual(448)
        const found = offPoints(full, decodeSampledJpeg(bytes, { rows, cols }, name), rows, cols)
        console.log(`${name} (${fit}): ${(found.off * 100).toFixed(2)}% of values off, by at most ${found.max}`)
        expect(found.off, fit).toBeLessThanOrEqual(0.02)
        expect(found.max, fit).toBeLessThanOrEqual(3)
      }
    },
    120_000,
  )

  it('every sampling it serves, grayscale, restart intervals and partial MCUs, at every pixel and at a resize’s points', async () => {
    for await (const { name, bytes, full } of encodings(['4:2:0', '4:2:2', '4:4:4'])) {
      const { width, height } = full
      const points = [
        { rows: every(height), cols: every(width) },
        samplePoints(width, height, { size: [100, 90], fit: 'stretch' }),
        samplePoints(width, height, { size: [64, 64], fit: 'center-crop' }),
      ]
      for (const { rows, cols } of points) {
        const found = offPoints(full, decodeSampledJpeg(bytes, { rows, cols }, name), rows, cols)
        console.log(
          `${name}, ${cols.length}×${rows.length} points: ${(found.off * 100).toFixed(2)}% off, at most ${found.max}`,
        )
        expect(found.off, name).toBeLessThanOrEqual(0.05)
        expect(found.max, name).toBeLessThanOrEqual(3)
      }
    }
    // Chroma subsampled 4×1 or 1×2: libjpeg's upsampling there is not the one followed; decoded at 1/scale instead.
    expect(
      samplable([
        [4, 1],
        [1, 1],
        [1, 1],
      ]),
    ).toBe(false)
    expect(
      samplable([
        [1, 2],
        [1, 1],
        [1, 1],
      ]),
    ).toBe(false)
    expect(
      samplable([
        [2, 2],
        [1, 1],
        [1, 1],
      ]),
    ).toBe(true)
  }, 120_000)
})

describe('phone photos under the default limits', () => {
  freshWasmIsolate()

  /** nsfwjs's MobileNetV2 scores for a row: the image model through its image input, or the same model fed a tensor. */
  async function scores(path: string, instance: unknown): Promise<number[]> {
    const res = await post(path, { instances: [instance] })
    const body = (await res.json()) as { predictions?: number[][]; error?: string }
    expect(res.status, body.error).toBe(200)
    return body.predictions![0]!
  }

  const SPEC = { size: [224, 224], channels: 3, range: [0, 1], fit: 'stretch', layout: 'nhwc' } as const

  /** The model's scores for decoded pixels: preprocessed as nsfw-images does, fed to the same model as a tensor. */
  async function scoresOf(pixels: Pixels): Promise<number[]> {
    const row = imageTensor(pixels, { ...SPEC, size: [224, 224], range: [0, 1] }, 'float32')
    const tensor = (await row.array()) as number[][][][]
    row.dispose()
    return scores('/v1/models/nsfw-mobilenet-v2:predict', tensor[0])
  }
  const gapOf = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)))
  const top = (row: number[]) => row.indexOf(Math.max(...row))

  // The Worker decodes a 12 MP baseline JPEG at the points its resize reads (decodeSampledJpeg): the full decode's
  // pixels there, so the answer is the full decode's. The decode at 1/8 the same points came from moves nsfwjs's
  // scores for the rocket and the cameraman by about 0.1 (a 1/8 pixel is the mean of 8×8, where the resize reads
  // 2×2 of every 18×18), and at 1/4 by 0.04–0.05: printed beside when the check fails, to tell a scaled decode.
  const PHONES = ['phone-chelsea.jpg', 'phone-rocket.jpg', 'phone-camera.jpg']
  /**
   * Every phone photo's full-decode scores, then its served ones: nsfw-mobilenet-v2 and nsfw-images (the same
   * MobileNetV2) do not fit the heap side by side, so asking them in turn, photo by photo, loaded one of them
   * for every request (6 loads); all of one model's requests before the other's load each once, and nsfw-images
   * stays for the tests after. Made once per file, each request as alone as before (one row); each test checks
   * its photo's.
   */
  let answers: Promise<Map<string, { served: number[]; reference: number[] }>> | undefined
  const answersFor = async (name: string) => {
    answers ??= (async () => {
      // The full decode's answer: mozjpeg at 4032×3024, the same preprocessing, the same model.
      const references = new Map<string, number[]>()
      for (const phone of PHONES) references.set(phone, await scoresOf((await photoDecoded(phone)).full))
      const both = new Map<string, { served: number[]; reference: number[] }>()
      for (const phone of PHONES) {
        const served = await scores('/v1/models/nsfw-images:predict', { b64: base64(await photo(phone)) })
        both.set(phone, { served, reference: references.get(phone)! })
      }
      return both
    })()
    return (await answers).get(name)!
  }
  afterAll(() => {
    answers = undefined
  })

  it.each(PHONES)(
    'classifies a 12 MP JPEG (%s) as the full-size decode does: scores within 0.02, the same top class',
    async (name) => {
      const { bytes } = await photoDecoded(name)
      expect(bytes.length).toBeGreaterThan(500_000)
      const { served, reference } = await answersFor(name)
      const gap = gapOf(served, reference)
      let scaled = ''
      if (gap > 0.02 || top(served) !== top(reference)) {
        // Two more decodes and model runs, which no check reads: only to say how far off a scaled decode would be.
        const eighth = await scoresOf(await decodeImage(bytes, roomy(), name, covering([224, 224])))
        const quarter = await scoresOf(await decodeImage(bytes, roomy(), name, covering([400, 400])))
        scaled = `; at 1/8 gap ${gapOf(eighth, reference).toFixed(4)}, at 1/4 ${gapOf(quarter, reference).toFixed(4)}`
      }
      console.log(
        `${name}: full ${reference.map((v) => v.toFixed(4))}; served ${served.map((v) => v.toFixed(4))}, gap ${gap.toFixed(4)}${scaled}`,
      )
      expect(gap).toBeLessThanOrEqual(0.02)
      expect(top(served)).toBe(top(reference))
    },
    300_000,
  )

  it('still refuses a 60000×60000 header before decoding, naming the decoded size', async () => {
    const jpeg = flatJpeg(64, 48, 3) as Uint8Array
    let sof = 2
    while (!(jpeg[sof] === 0xff && jpeg[sof + 1] === 0xc0)) sof++
    jpeg.set([0xea, 0x60, 0xea, 0x60], sof + 5)
    const before = decoderHeapBytes().jpg
    const res = await post('/v1/models/nsfw-images:predict', { instances: [{ b64: base64(jpeg) }] })
    expect(res.status).toBe(413)
    expect(((await res.json()) as { error: string }).error).toMatch(
      /the JPEG is 60000×60000; decoded at 1\/8 scale it is 7500×7500, 56250000 pixels, more than the limit of 4000000 \(MAX_IMAGE_PIXELS\)/,
    )
    expect(decoderHeapBytes().jpg).toBe(before)
  })

  it('refuses a 12 MP progressive JPEG (decoded whole) by MAX_IMAGE_PIXELS, saying why', async () => {
    const jpeg = (await photo('chelsea.jpg')).slice()
    let sof = 2
    while (!(jpeg[sof] === 0xff && jpeg[sof + 1] === 0xc2)) sof++
    jpeg.set([0x0b, 0xd0, 0x0f, 0xc0], sof + 5) // 3024 rows of 4032
    const res = await post('/v1/models/nsfw-images:predict', { instances: [{ b64: base64(jpeg) }] })
    expect(res.status).toBe(413)
    expect(((await res.json()) as { error: string }).error).toMatch(
      /the JPEG is 4032×3024, 12192768 pixels decoded at full size \(a progressive JPEG is decoded whole; only a baseline one is decoded at a reduced scale\), more than the limit of 4000000 \(MAX_IMAGE_PIXELS\)/,
    )
  })

  it('bounds the blocks a scaled decode reads: a small file of empty blocks declaring 15000×15000 is refused before decoding', async () => {
    // 1875×1875 at 1/8 is within MAX_IMAGE_PIXELS, but its 10.5 million blocks are each entropy-decoded.
    const jpeg = flatJpeg(15000, 15000, 3) as Uint8Array
    expect(jpeg.length).toBeLessThan(3 * MiB)
    // Its planes and RGBA (24.6 MB) are past MAX_IMAGE_DECODE_BYTES too; with room for them, the blocks are what refuses it.
    await expect(decodeImage(jpeg, defaults(), 'bomb', covering([224, 224]))).rejects.toThrow(/MAX_IMAGE_DECODE_BYTES/)
    const room = { ...defaults(), maxDecodeBytes: 256 * MiB }
    await expect(decodeImage(jpeg, room, 'bomb', covering([224, 224]))).rejects.toThrow(
      new RegExp(
        `15000×15000 \\(1875×1875 decoded at 1/8 scale, reading its 10546875 blocks\\); decoding it costs \\d+ pixel-passes, more than the limit of ${MAX_DECODE_WORK}`,
      ),
    )
  })
})

describe('corrupt scaled JPEGs, decoded at points or at a scale', () => {
  /**
   * The outcome of decoding `bytes` for an input of `size` (at its resize's points, or at the scale that covers it):
   * 'ok', or the ApiError's status (anything else fails).
   */
  async function outcome(bytes: Uint8Array, size: [number, number], atPoints: boolean): Promise<string | number> {
    try {
      await decodeImage(bytes, defaults(), 'fuzz', covering(size), atPoints ? pointsFor(size) : undefined)
      return 'ok'
    } catch (error) {
      if (!(error instanceof ApiError)) throw error
      return error.status
    }
  }

  it('gives 400 for scan data cut short at any point, and for a missing restart marker', async () => {
    const bytes = await photo('phone-chelsea.jpg')
    for (const keep of [0.1, 0.5, 0.9, 0.999]) {
      const cut = new Uint8Array(Math.floor(bytes.length * keep) + 2)
      cut.set(bytes.subarray(0, cut.length - 2))
      cut.set([0xff, 0xd9], cut.length - 2)
      for (const points of [undefined, pointsFor([224, 224])])
        await expect(decodeImage(cut, defaults(), 'cut', covering([224, 224]), points), `${keep}`).rejects.toThrow(
          /cut: the JPEG image is truncated or corrupt; its entropy-coded data ends before its last block/,
        )
    }
    const rgba = new Uint8Array(64 * 48 * 4).map((_, i) => (i * 37) & 255)
    const restarts = encodeJpeg(rgba, 64, 48, { restartInterval: 2 })
    const rst = restarts.findIndex((b, i) => b === 0xff && restarts[i + 1] === 0xd1)
    restarts[rst + 1] = 0xd5
    for (const points of [undefined, pointsFor([4, 4])])
      await expect(decodeImage(restarts, defaults(), 'rst', covering([4, 4]), points)).rejects.toThrow(
        /rst: the JPEG image is truncated or corrupt; restart marker 1 is missing after 4 units of its scan/,
      )
  })

  it('never fails but with a 400 or 413 on rewritten, cut or random bytes, at points and at every scale (fuzzed)', async () => {
    const rgba = new Uint8Array(96 * 64 * 4).map((_, i) => (i * 131 + (i >> 7)) & 255)
    const seeds = [
      encodeJpeg(rgba, 96, 64, { sampling: [2, 2], restartInterval: 3 }),
      encodeJpeg(rgba, 96, 64, { sampling: [2, 1] }),
      encodeJpeg(rgba, 96, 64, { grayscale: true }),
    ]
    // Inputs whose covering scale is 1/8, 1/4 and 1/2 of 96×64.
    const sizes: [number, number][] = [
      [8, 8],
      [16, 16],
      [32, 32],
    ]
    for (const seed of seeds)
      for (const size of sizes)
        for (const atPoints of [false, true]) expect(await outcome(seed, size, atPoints)).toBe('ok')
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: seeds.length - 1 }),
        fc.integer({ min: 0, max: sizes.length - 1 }),
        fc.boolean(),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.option(fc.nat(), { nil: undefined }),
        async (which, size, atPoints, edits, cut) => {
          let bytes = seeds[which]!.slice()
          for (const [at, value] of edits) bytes[2 + (at % (bytes.length - 2))] = value
          if (cut !== undefined) bytes = bytes.subarray(0, 3 + (cut % (bytes.length - 3)))
          expect([400, 413, 'ok']).toContain(await outcome(bytes, sizes[size]!, atPoints))
        },
      ),
      { numRuns: 1000 },
    )
  }, 120_000)
})
