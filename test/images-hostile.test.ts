// Issue 24: images crafted against the decoders (scripts/dev/hostile-images.mjs makes them), and the
// bounds that hold them: headers read as the decoder reads them, inflation capped, samples counted,
// scans capped, CMYK named, a request's pixels counted across its inputs, decoder heaps bounded.
import { env } from 'cloudflare:workers'
import fc from 'fast-check'
import { encode as encodePng } from 'fast-png'
import { describe, expect, it } from 'vitest'
import {
  decodeImage,
  decoderHeapBytes,
  decoderHeapHighWaterBytes,
  lastDecoderHeapBytes,
  MAX_DECODE_WORK,
} from '../src/protocols/images/decode'
import { call, post, SETOSA } from './support/helpers'
// prettier-ignore
// @ts-expect-error: a plain .mjs module without type declarations
import { flatJpeg, jpegFillByteDesync, jpegScanBomb, png16, pngChunk, pngDoubleIhdr, pngIccpBomb, pngIdatBomb } from '../scripts/dev/hostile-images.mjs'
import { base64, photo } from './support/photos'

const MiB = 1024 * 1024

/** The `pixels` fixture model's answer for one image (its output is the 8×8 tensor the image became). */
const classify = (bytes: Uint8Array, bindings?: Env) =>
  call(
    '/v1/models/pixels:predict',
    {
      method: 'POST',
      body: JSON.stringify({ instances: [{ b64: base64(bytes) }] }),
      headers: { 'content-type': 'application/json' },
    },
    bindings,
  )

async function answer(res: Response): Promise<[number, string]> {
  const body = (await res.json()) as { error?: string }
  return [res.status, body.error ?? 'ok']
}

const limits = (
  overrides: Partial<{ maxBytes: number; maxPixels: number; maxDecodeBytes: number; request: number }> = {},
) => ({
  maxBytes: overrides.maxBytes ?? 8 * MiB,
  maxPixels: overrides.maxPixels ?? 4_000_000,
  maxDecodeBytes: overrides.maxDecodeBytes ?? 16 * MiB,
  requestPixels: { left: overrides.request ?? 16_000_000, limit: overrides.request ?? 16_000_000 },
})

describe('crafted PNGs', () => {
  it('refuses a second IHDR before anything is allocated (93 bytes declaring 1×1, then 8192×8192)', async () => {
    const bytes = await pngDoubleIhdr()
    expect(bytes.length).toBeLessThan(100)
    expect(await answer(await classify(bytes))).toEqual([
      400,
      expect.stringMatching(/a second IHDR chunk \(byte 33\); a PNG has exactly one, first/),
    ])
  })

  it('stops an IDAT zlib bomb at the size its header allows (261 KB inflating to 256 MiB, 1000×1000 gray)', async () => {
    const bytes = await pngIdatBomb()
    expect(bytes.length).toBeLessThan(300_000)
    expect(await answer(await classify(bytes))).toEqual([
      400,
      expect.stringMatching(
        /inflates to more than the 1001000 bytes its 1000×1000 header allows \(a compression bomb\)/,
      ),
    ])
  })

  it('never inflates an ancillary chunk: the same bomb in iCCP beside a valid image is decoded, the profile unread', async () => {
    const bytes = await pngIccpBomb()
    const res = await classify(bytes)
    expect(await answer(res)).toEqual([200, 'ok'])
  })

  it('counts 16-bit samples at twice 8-bit: 1200×1200 RGBA is decoded at 8 bits and refused at 16, naming MAX_IMAGE_DECODE_BYTES', async () => {
    const rgba8 = encodePng({
      width: 1200,
      height: 1200,
      channels: 4,
      depth: 8,
      data: new Uint8Array(1200 * 1200 * 4).fill(90),
    })
    expect(await answer(await classify(rgba8))).toEqual([200, 'ok'])
    expect(await answer(await classify(await png16(1200, 1200)))).toEqual([
      413,
      expect.stringMatching(
        /the PNG \(16-bit RGBA\) is 1200×1200; decoding it takes 18\.3 MB, more than the limit of 16\.8 MB \(MAX_IMAGE_DECODE_BYTES\)/,
      ),
    ])
    // The 62 KB one of the issue, 2800×2800, is past MAX_IMAGE_PIXELS now.
    expect(await answer(await classify(await png16(2800, 2800)))).toEqual([
      413,
      expect.stringMatching(/MAX_IMAGE_PIXELS/),
    ])
  })

  it('decodes every color type and bit depth, interlaced or not, to the pixels fast-png and the source have', async () => {
    // A hand-written encoder (filter 0, any interlace), so Adam7 and 1/2/4-bit rows are covered too.
    const pack = (samples: number[], depth: number) => {
      const out = new Uint8Array(Math.ceil((samples.length * depth) / 8))
      samples.forEach((v, i) => {
        if (depth === 16) out.set([v >> 8, v & 255], i * 2)
        else out[(i * depth) >> 3]! |= v << (8 - depth - ((i * depth) & 7))
      })
      return out
    }
    const PASSES = [
      [0, 0, 8, 8],
      [4, 0, 8, 8],
      [0, 4, 4, 8],
      [2, 0, 4, 4],
      [0, 2, 2, 4],
      [1, 0, 2, 2],
      [0, 1, 1, 2],
    ]
    const cases = fc.record({
      width: fc.integer({ min: 1, max: 19 }),
      height: fc.integer({ min: 1, max: 19 }),
      format: fc.constantFrom(
        ...([
          [0, 1],
          [0, 2],
          [0, 4],
          [0, 8],
          [0, 16],
          [2, 8],
          [2, 16],
          [3, 1],
          [3, 2],
          [3, 4],
          [3, 8],
          [4, 8],
          [4, 16],
          [6, 8],
          [6, 16],
        ] as [number, number][]),
      ),
      interlaced: fc.boolean(),
      seed: fc.integer({ min: 1, max: 1e6 }),
    })
    await fc.assert(
      fc.asyncProperty(cases, async ({ width, height, format: [colorType, depth], interlaced, seed }) => {
        const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType as 0]!
        const max = (1 << depth) - 1
        const sample = (x: number, y: number, c: number) => ((x * 31 + y * 17 + c * 7) * seed) % (max + 1)
        const palette = Uint8Array.from({ length: (max + 1) * 3 }, (_, i) => (i * 37 + seed) % 256)
        const rows: number[] = []
        for (const [x0, y0, dx, dy] of interlaced ? PASSES : [[0, 0, 1, 1]]) {
          for (let y = y0!; y < height; y += dy!) {
            const line: number[] = []
            for (let x = x0!; x < width; x += dx!) for (let c = 0; c < channels; c++) line.push(sample(x, y, c))
            if (line.length) rows.push(0, ...pack(line, depth))
          }
        }
        const stream = new Response(
          new Blob([Uint8Array.from(rows)]).stream().pipeThrough(new CompressionStream('deflate')),
        )
        const ihdr = Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, depth, colorType, 0, 0, interlaced ? 1 : 0])
        new DataView(ihdr.buffer).setUint32(0, width)
        new DataView(ihdr.buffer).setUint32(4, height)
        const parts = [Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr)]
        if (colorType === 3) parts.push(pngChunk('PLTE', palette))
        parts.push(pngChunk('IDAT', new Uint8Array(await stream.arrayBuffer())), pngChunk('IEND', new Uint8Array(0)))
        const bytes = new Uint8Array(await new Blob(parts).arrayBuffer())
        const { rgba } = await decodeImage(bytes, limits(), 'png')
        for (let y = 0; y < height; y++) {
          for (let x = 0; x < width; x++) {
            const scale = (v: number) => (depth === 16 ? v >> 8 : depth < 8 ? Math.round((v * 255) / max) : v)
            const want =
              colorType === 3
                ? [...palette.subarray(sample(x, y, 0) * 3, sample(x, y, 0) * 3 + 3)]
                : channels >= 3
                  ? [0, 1, 2].map((c) => scale(sample(x, y, c)))
                  : [0, 0, 0].map(() => scale(sample(x, y, 0)))
            expect([...rgba.subarray((y * width + x) * 4, (y * width + x) * 4 + 4)], `${x},${y}`).toEqual([
              ...want,
              255,
            ])
          }
        }
      }),
      { numRuns: 120 },
    )
  })
})

describe('crafted JPEGs', () => {
  it('reads the frame as libjpeg does, fill bytes included: FF D8 FF FF FF E1 hides a fake 1×1 SOF; the 8192×8192 frame is the one held to the limits', async () => {
    const before = decoderHeapBytes().jpg
    // The `pixels` model's 8×8 input takes the JPEG at 1/8: 1024×1024 decoded, past a limit of 500,000 pixels.
    const res = await classify(jpegFillByteDesync(), { ...env, MAX_IMAGE_PIXELS: String(500_000) } as Env)
    expect(await answer(res)).toEqual([
      413,
      expect.stringMatching(
        /the JPEG is 8192×8192; decoded at 1\/8 scale it is 1024×1024, 1048576 pixels, more than the limit of 500000 \(MAX_IMAGE_PIXELS\)/,
      ),
    ])
    expect(decoderHeapBytes().jpg).toBe(before)
  })

  it('caps progressive scans: a real photo with one scan repeated 1000 times is refused before decoding', async () => {
    const bomb = jpegScanBomb(await photo('chelsea.jpg'))
    expect(await answer(await classify(bomb))).toEqual([
      413,
      expect.stringMatching(/the JPEG has more than 100 scans, the limit/),
    ])
    // Under the scan cap, pixels × scans is bounded: 60 more copies of the scan of a 2000×1500 frame.
    const wide = flatJpeg(2000, 1500)
    let sos = 2
    while (!(wide[sos] === 0xff && wide[sos + 1] === 0xda)) sos++
    const scan = wide.subarray(sos, wide.length - 2)
    const many = new Uint8Array(
      await new Blob([
        wide.subarray(0, wide.length - 2),
        ...new Array(60).fill(scan),
        Uint8Array.of(0xff, 0xd9),
      ]).arrayBuffer(),
    )
    // Past MAX_IMAGE_PIXELS (1 MP here), so decoded at 1/8 for the 8×8 model: each of the 61 scans still reads
    // all 47,000 blocks of the frame.
    const roomy = { ...env, MAX_IMAGE_DECODE_BYTES: String(64 * MiB), MAX_IMAGE_PIXELS: String(1_000_000) }
    expect(await answer(await classify(many, roomy))).toEqual([
      413,
      expect.stringMatching(
        new RegExp(
          `61 scans\\) is 2000×1500 \\(250×188 decoded at 1/8 scale, reading its 47000 blocks\\); decoding it costs 48739000 pixel-passes, more than the limit of ${MAX_DECODE_WORK} pixel-passes`,
        ),
      ),
    ])
    // Decoded whole (no model input to cover), it is pixels × scans that is bounded.
    await expect(decodeImage(many, limits({ maxDecodeBytes: 64 * MiB }), 'many')).rejects.toThrow(
      new RegExp(`61 passes over 3000000 pixels, more than the limit of ${MAX_DECODE_WORK} pixel-passes`),
    )
  })

  it.each([
    ['CMYK', 0],
    ['YCCK', 2],
  ])('names a %s JPEG as such, not as corrupt', async (space, transform) => {
    expect(await answer(await classify(flatJpeg(64, 48, 4, transform)))).toEqual([
      400,
      expect.stringMatching(new RegExp(`a ${space} JPEG \\(4 color components`)),
    ])
  })

  it.each([
    ['lossless', 0xc3],
    ['arithmetic-coded', 0xc9],
    ['hierarchical', 0xc5],
  ])('refuses a %s JPEG by name (SOF marker %i)', async (what, marker) => {
    const jpeg = flatJpeg(64, 48)
    let sof = 2
    while (!(jpeg[sof] === 0xff && jpeg[sof + 1] === 0xc0)) sof++
    jpeg[sof + 1] = marker
    expect(await answer(await classify(jpeg))).toEqual([
      400,
      expect.stringMatching(new RegExp(`a ${what} JPEG; send a baseline or progressive`)),
    ])
  })

  it('refuses a JPEG the decoder would fill in with a warning (a scan cut short), and still decodes the photos', async () => {
    const jpeg = await photo('chelsea.jpg')
    // The last scan's data cut in half, EOI kept: libjpeg warns "Premature end" / "Corrupt JPEG data" and fills in.
    let last = 0
    for (let i = 0; i + 1 < jpeg.length; i++) if (jpeg[i] === 0xff && jpeg[i + 1] === 0xda) last = i
    const cut = new Uint8Array(
      await new Blob([jpeg.subarray(0, last + (jpeg.length - last) / 2), Uint8Array.of(0xff, 0xd9)]).arrayBuffer(),
    )
    expect(await answer(await classify(cut))).toEqual([
      400,
      expect.stringMatching(/JPEG image is truncated or corrupt/),
    ])
    for (const name of ['chelsea.jpg', 'rocket.jpg', 'chelsea-small.jpg'])
      expect(await answer(await classify(await photo(name))), name).toEqual([200, 'ok'])
  })
})

describe('decoder heaps, the request budget, the other requests', () => {
  it('keeps no decoder heap after a decode, however large the image grew it', async () => {
    // Decoded whole by mozjpeg (no model input to cover, so no scaled decode).
    const big = await decodeImage(
      flatJpeg(3000, 3000, 3),
      limits({ maxPixels: 16_000_000, maxDecodeBytes: 256 * MiB }),
      'big',
    )
    expect([big.width, big.height]).toEqual([3000, 3000])
    // The decode's heap held the 3000×3000 RGBA (36 MB) and is dropped with its instance.
    expect(decoderHeapHighWaterBytes()).toBeGreaterThan(3000 * 3000 * 4)
    expect(decoderHeapBytes()).toEqual({ jpg: 0, webp: 0 })
    // A small image after it gets an instance of its own, dropped too.
    expect(await answer(await classify(await photo('chelsea-small.jpg')))).toEqual([200, 'ok'])
    expect(decoderHeapBytes()).toEqual({ jpg: 0, webp: 0 })
  })

  it("gives a decode the heap it needs, not Emscripten's initial 16 MiB, and the same pixels", async () => {
    // Real photographs decoded whole (no model input to cover): RGBA of 451×300 is 0.54 MB.
    const whole = limits({ maxPixels: 16_000_000, maxDecodeBytes: 256 * MiB })
    for (const [name, type] of [
      ['chelsea.jpg', 'jpg'],
      ['chelsea-lossless.webp', 'webp'],
    ] as const) {
      const bytes = await photo(name)
      const pixels = await decodeImage(bytes, whole, name)
      const rgba = pixels.width * pixels.height * 4
      const heap = lastDecoderHeapBytes(type)
      // The RGBA and the file are on the heap, with the codec's rows and tables; grown page by page.
      expect(heap, name).toBeGreaterThan(rgba)
      expect(heap, name).toBeLessThan(rgba + bytes.length + 2 * MiB)
      // Decoded whole, at the photo's own size.
      expect([pixels.width, pixels.height], name).toEqual([451, 300])
    }
    // The lossless WebP's pixels are the PNG's of the same photo.
    const png = await decodeImage(await photo('chelsea.png'), whole, 'png')
    const webp = await decodeImage(await photo('chelsea-lossless.webp'), whole, 'webp')
    expect(webp.rgba).toEqual(png.rgba)
  })

  it("reads a decoder's pixels on its heap, not from a copy, and leaves Uint8ClampedArray as it was", async () => {
    const whole = limits({ maxPixels: 16_000_000, maxDecodeBytes: 256 * MiB })
    const constructor = globalThis.Uint8ClampedArray
    for (const [name, type] of [
      ['chelsea.jpg', 'jpg'],
      ['chelsea-lossless.webp', 'webp'],
    ] as const) {
      const pixels = await decodeImage(await photo(name), whole, name)
      // A view of the decoder's heap (its whole memory behind the RGBA), not an array of the RGBA's own.
      expect(pixels.rgba.buffer.byteLength, name).toBe(lastDecoderHeapBytes(type))
      expect(pixels.rgba.buffer.byteLength, name).toBeGreaterThan(pixels.rgba.byteLength)
      expect(globalThis.Uint8ClampedArray === constructor, name).toBe(true)
    }
    // Put back after a decode that fails in the decoder too: the last scan cut in half, which libjpeg warns of.
    const jpeg = await photo('chelsea.jpg')
    let last = 0
    for (let i = 0; i + 1 < jpeg.length; i++) if (jpeg[i] === 0xff && jpeg[i + 1] === 0xda) last = i
    const cut = new Uint8Array([...jpeg.subarray(0, last + (jpeg.length - last) / 2), 0xff, 0xd9])
    await expect(decodeImage(cut, whole, 'cut')).rejects.toThrow(/truncated or corrupt/)
    expect(globalThis.Uint8ClampedArray === constructor).toBe(true)
    expect(new Uint8ClampedArray([300])[0]).toBe(255)
  })

  it('counts MAX_REQUEST_IMAGE_PIXELS across all the inputs of a request, not per input', async () => {
    const image = {
      b64: base64(encodePng({ width: 20, height: 20, channels: 3, depth: 8, data: new Uint8Array(1200).fill(7) })),
    }
    const budget = { ...env, MAX_REQUEST_IMAGE_PIXELS: String(3 * 400) }
    const two = await post('/v1/models/pixels-pair:predict', { instances: [{ left: image, right: image }] }, {}, budget)
    expect(await answer(two)).toEqual([200, 'ok'])
    // Two rows, two inputs: four images of 400 pixels, left's two first; the fourth passes 1200.
    const four = await post(
      '/v1/models/pixels-pair:predict',
      {
        instances: [
          { left: image, right: image },
          { left: image, right: image },
        ],
      },
      {},
      budget,
    )
    expect(await answer(four)).toEqual([
      413,
      expect.stringMatching(
        /^instances\[1\]\['right'\]: the request's images add up to more than 1200 pixels \(MAX_REQUEST_IMAGE_PIXELS\)/,
      ),
    ])
    const v2 = await post(
      '/v2/models/pixels-pair/infer',
      {
        inputs: ['left', 'right'].map((name) => ({
          name,
          datatype: 'BYTES',
          shape: [2],
          data: [image.b64, image.b64],
        })),
      },
      {},
      budget,
    )
    expect(await answer(v2)).toEqual([
      413,
      expect.stringMatching(/^input 'right'\[1\]: the request's images add up to more than 1200 pixels/),
    ])
  })

  it('answers another request between two images of one request, not after all of them', async () => {
    expect((await post('/v1/models/iris:predict', { instances: [SETOSA] })).status).toBe(200) // loaded first
    const image = { b64: base64(flatJpeg(1000, 1000, 3)) }
    const finished: string[] = []
    const images = post('/v1/models/pixels:predict', { instances: new Array(12).fill(image) }).then(
      (res) => (finished.push('images'), res),
    )
    // Sent at the isolate's next turn: while the images are decoded, not before.
    const iris = new Promise((resolve) => setTimeout(resolve, 0))
      .then(() => post('/v1/models/iris:predict', { instances: [SETOSA] }))
      .then((res) => (finished.push('iris'), res))
    expect((await Promise.all([images, iris])).map((res) => res.status)).toEqual([200, 200])
    // Each decode runs to its end; between two, the iris request gets its turn.
    expect(finished).toEqual(['iris', 'images'])
  })
})
