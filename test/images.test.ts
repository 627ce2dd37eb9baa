// Issue 11: images in, labels out. Real photographs (scikit-image's sample data, CC0 and public
// domain; test/fixtures/models/_images/) and the bundled digits model, through the Worker's routes.
import { env } from 'cloudflare:workers'
import fc from 'fast-check'
import { decode as decodePng, encode as encodePng } from 'fast-png'
import { describe, expect, it } from 'vitest'
import { isolate } from '../src/isolate'
import { centerCrop, imageTensor } from '../src/protocols/images/preprocess'
import type { ImageTransform } from '../src/repository/model-config'
import { tf } from '../src/runtime/tf'
import digits from './fixtures/digits-holdout.json'
import { call, post } from './support/helpers'
import { digitPng } from './support/digits'
import { base64, photo } from './support/photos'

/** Held-out digit `i` as a grayscale PNG, its [0, 1] values rounded to bytes. */

const postImage = (path: string, bytes: Uint8Array, type: string, bindings?: Env) =>
  call(path, { method: 'POST', body: bytes, headers: { 'content-type': type } }, bindings)

const argmax = (row: readonly number[]) => row.reduce((best, v, i) => (v > row[best]! ? i : best), 0)

interface Ranked {
  label: string
  score: number
}

/** The flat [8·8·3] tensor the `pixels` fixture model (its output is its input) gets for an image. */
async function pixelsOf(bytes: Uint8Array): Promise<number[]> {
  const res = await post('/v1/models/pixels:predict', { instances: [{ b64: base64(bytes) }] })
  expect(res.status, await res.clone().text()).toBe(200)
  return ((await res.json()) as { predictions: number[][] }).predictions[0]!
}

/** tf.image.resizeBilinear of RGBA pixels' RGB, as a flat list (the reference the transform must equal). */
function resizedByTf(
  rgba: Uint8Array,
  width: number,
  height: number,
  size: [number, number],
  crop?: ReturnType<typeof centerCrop>,
): number[] {
  return tf.tidy(() => {
    let image: tf.Tensor3D = tf.slice(
      tf.tensor3d(Float32Array.from(rgba), [height, width, 4]),
      [0, 0, 0],
      [height, width, 3],
    )
    if (crop) image = tf.slice(image, [crop.y, crop.x, 0], [crop.height, crop.width, 3])
    return Array.from(tf.image.resizeBilinear(image, size).dataSync())
  })
}

const maxDiff = (a: readonly number[], b: readonly number[]) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0)

describe(':classify with a raw image body', () => {
  it('classifies the held-out digits sent as PNG files at the accuracy the training recorded', async () => {
    let correct = 0
    for (let i = 0; i < digits.count; i++) {
      const res = await postImage('/v1/models/digits:classify', digitPng(i), 'image/png')
      expect(res.status).toBe(200)
      const [best] = (await res.json()) as Ranked[]
      if (best!.label === String(digits.labels[i])) correct++
    }
    console.log(`[images] digits through :classify as PNG: ${correct}/${digits.count}`)
    // 198 of 200 over JSON numbers (tf-serving.test.ts); the PNG rounds each value to 1/255.
    expect(correct).toBeGreaterThanOrEqual(198)
  })

  it('answers classify.top_k labels sorted by score, and ?top_k overrides it', async () => {
    const png = digitPng(0)
    const three = (await (await postImage('/v1/models/digits:classify', png, 'image/png')).json()) as Ranked[]
    expect(three).toHaveLength(3)
    const all = (await (
      await postImage('/v1/models/digits/versions/1:classify?top_k=50', png, 'image/png')
    ).json()) as Ranked[]
    expect(all.map((r) => r.label).sort()).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
    expect(all.map((r) => r.score)).toEqual([...all.map((r) => r.score)].sort((a, b) => b - a))
    expect(all.slice(0, 3)).toEqual(three)
    // The digits model ends in a softmax and classify.activation is none: the scores are its probabilities.
    expect(all.reduce((s, r) => s + r.score, 0)).toBeCloseTo(1, 4)
  })

  it('times the decode and preprocessing in Server-Timing, beside the inference', async () => {
    const res = await postImage('/v1/models/digits:classify', digitPng(1), 'image/png')
    expect(res.status).toBe(200)
    expect(res.headers.get('server-timing')).toMatch(/^(load;dur=\d+;desc="\w+", )?decode;dur=\d+, infer;dur=\d+$/)
  })

  it('reads labels from a file beside config.json', async () => {
    const res = await postImage('/v1/models/digits-labels-file:classify?top_k=1', digitPng(0), 'image/png')
    expect(await res.json()).toEqual([{ label: 'zero', score: expect.any(Number) }])
  })

  it('refuses at load a labels list that does not count the classes, naming both', async () => {
    const res = await postImage('/v1/models/digits-badlabels:classify', digitPng(0), 'image/png')
    expect(res.status).toBe(503)
    expect(((await res.json()) as { error: string }).error).toMatch(/9 labels, but output '.+' has 10 classes/)
  })
})

describe('preprocessing', () => {
  it('equals tf.image.resizeBilinear (and a centered crop first) for any image and size', () => {
    const transform = (size: [number, number], fit: 'stretch' | 'center-crop'): ImageTransform => ({
      size,
      channels: 3,
      range: [0, 255],
      fit,
      layout: 'nhwc',
    })
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.tuple(fc.integer({ min: 1, max: 24 }), fc.integer({ min: 1, max: 24 })),
        fc.constantFrom('stretch' as const, 'center-crop' as const),
        fc.integer(),
        (width, height, size, fit, seed) => {
          const rgba = Uint8Array.from({ length: width * height * 4 }, (_, i) => (seed + i * 7919) % 256)
          const got = tf.tidy(() =>
            Array.from(imageTensor({ width, height, rgba }, transform(size, fit), 'float32').dataSync()),
          )
          const crop = fit === 'center-crop' ? centerCrop(width, height, size) : undefined
          expect(maxDiff(got, resizedByTf(rgba, width, height, size, crop))).toBeLessThan(1e-3)
        },
      ),
      { numRuns: 60 },
    )
  })

  it("normalizes as tf.js's own ops would, bit for bit: luma, range, mean and std, int32 rounding, layout", async () => {
    // The reference: the resized pixels (range [0, 255], which leaves them as they are), then the
    // steps as tf.js ops on the backend in use, as the preprocessing made them before it computed them
    // in JavaScript (in float32, each operation rounded, int32 half to even).
    const LUMA = [0.2989, 0.587, 0.114]
    const reference = (resized: tf.Tensor, spec: ImageTransform, dtype: 'float32' | 'int32') =>
      tf.tidy(() => {
        let t = tf.squeeze(resized, [0])
        if (spec.channels === 1) t = tf.sum(tf.mul(t, tf.tensor1d(LUMA)), -1, true)
        const [low, high] = spec.range
        t = tf.add(tf.mul(t, (high - low) / 255), low)
        if (spec.mean) t = tf.sub(t, tf.tensor1d(spec.mean))
        if (spec.std) t = tf.div(t, tf.tensor1d(spec.std))
        if (dtype === 'int32') t = tf.cast(tf.round(t), 'int32')
        if (spec.layout === 'nchw') t = tf.transpose(t, [2, 0, 1])
        return tf.expandDims(t, 0)
      })
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          width: fc.integer({ min: 1, max: 40 }),
          height: fc.integer({ min: 1, max: 40 }),
          size: fc.tuple(fc.integer({ min: 1, max: 24 }), fc.integer({ min: 1, max: 24 })),
          channels: fc.constantFrom(1, 3),
          range: fc.constantFrom<[number, number]>([0, 1], [-1, 1], [0, 255], [-0.5, 0.5]),
          normalize: fc.boolean(),
          layout: fc.constantFrom('nhwc' as const, 'nchw' as const),
          dtype: fc.constantFrom('float32' as const, 'int32' as const),
          seed: fc.integer(),
        }),
        async ({ width, height, size, channels, range, normalize, layout, dtype, seed }) => {
          const rgba = Uint8Array.from({ length: width * height * 4 }, (_, i) => (seed + i * 7919) % 256)
          const pixels = { width, height, rgba }
          const base = { size, channels: 3, range: [0, 255], fit: 'stretch', layout: 'nhwc' } as ImageTransform
          const mean = channels === 1 ? [0.449] : [0.485, 0.456, 0.406]
          const std = channels === 1 ? [0.226] : [0.229, 0.224, 0.225]
          const spec = { ...base, channels, range, layout, ...(normalize && { mean, std }) } as ImageTransform
          const resized = imageTensor(pixels, base, 'float32')
          const want = reference(resized, spec, dtype)
          const got = imageTensor(pixels, spec, dtype)
          try {
            expect(got.shape).toEqual(want.shape)
            expect(got.dtype).toBe(want.dtype)
            const [a, b] = [await got.data(), await want.data()]
            expect(Array.from(a).findIndex((v, i) => !Object.is(v, b[i]))).toBe(-1)
          } finally {
            tf.dispose([resized, want, got])
          }
        },
      ),
      { numRuns: 60 },
    )
  })

  it('gives a PNG photo the tensor tf.image.resizeBilinear gives its pixels', async () => {
    const bytes = await photo('chelsea.png')
    const png = decodePng(bytes)
    const rgba = new Uint8Array(png.width * png.height * 4)
    for (let p = 0; p < png.width * png.height; p++)
      rgba.set([png.data[p * 3]!, png.data[p * 3 + 1]!, png.data[p * 3 + 2]!, 255], p * 4)
    expect(maxDiff(await pixelsOf(bytes), resizedByTf(rgba, png.width, png.height, [8, 8]))).toBeLessThan(1e-3)
  })

  it('decodes lossless WebP to the PNG values, and JPEG close to them', async () => {
    const fromPng = await pixelsOf(await photo('chelsea.png'))
    expect(await pixelsOf(await photo('chelsea-lossless.webp'))).toEqual(fromPng)
    const fromJpeg = await pixelsOf(await photo('chelsea.jpg'))
    const mean = fromJpeg.reduce((s, v, i) => s + Math.abs(v - fromPng[i]!), 0) / fromPng.length
    expect(mean).toBeLessThan(4)
  })

  it('gives a grayscale photo three equal channels', async () => {
    const values = await pixelsOf(await photo('camera.png'))
    for (let p = 0; p < values.length; p += 3) expect([values[p + 1], values[p + 2]]).toEqual([values[p], values[p]])
  })
})

describe('b64 and BYTES', () => {
  const png = digitPng(3)
  const numbers = Array.from({ length: 28 }, (_, r) =>
    Array.from({ length: 28 }, (_, c) => [(Math.round(digits.images[3]![r * 28 + c]! * 255) / 255) * 0.9999]),
  )

  it('predicts from {"b64": …} rows, bare or keyed by input name, as from the numbers', async () => {
    const want = (
      (await (await post('/v1/models/digits:predict', { instances: [numbers] })).json()) as { predictions: number[][] }
    ).predictions[0]!
    for (const instances of [[{ b64: base64(png) }], [{ image: { b64: base64(png) } }]]) {
      const res = await post('/v1/models/digits:predict', { instances })
      expect(res.status, await res.clone().text()).toBe(200)
      const got = ((await res.json()) as { predictions: number[][] }).predictions[0]!
      expect(argmax(got)).toBe(digits.labels[3])
      expect(maxDiff(got, want)).toBeLessThan(1e-4)
    }
  })

  it("answers TF Serving's classify request in its shape", async () => {
    const res = await post('/v1/models/digits:classify', {
      examples: [{ image: { b64: base64(png) } }, { image: { b64: base64(digitPng(0)) } }],
    })
    expect(res.status, await res.clone().text()).toBe(200)
    const { results } = (await res.json()) as { results: [string, number][][] }
    expect(results).toHaveLength(2)
    expect(results.map((r) => r[0]![0])).toEqual([String(digits.labels[3]), String(digits.labels[0])])
    expect(results[0]).toHaveLength(3)
  })

  it('takes Open Inference Protocol BYTES, as base64 in JSON and length-prefixed in binary', async () => {
    const json = await post('/v2/models/digits/infer', {
      inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [base64(png)] }],
    })
    expect(json.status, await json.clone().text()).toBe(200)
    const fromJson = ((await json.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data
    expect(argmax(fromJson)).toBe(digits.labels[3])

    const header = new TextEncoder().encode(
      JSON.stringify({
        inputs: [
          { name: 'image', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: 2 * 4 + 2 * png.length } },
        ],
      }),
    )
    const body = new Uint8Array(header.length + 2 * (4 + png.length))
    body.set(header)
    for (const at of [header.length, header.length + 4 + png.length]) {
      new DataView(body.buffer).setUint32(at, png.length, true)
      body.set(png, at + 4)
    }
    const binary = await call('/v2/models/digits/infer', {
      method: 'POST',
      body,
      headers: { 'Inference-Header-Content-Length': String(header.length) },
    })
    expect(binary.status, await binary.clone().text()).toBe(200)
    const out = ((await binary.json()) as { outputs: { data: number[]; shape: number[] }[] }).outputs[0]!
    expect(out.shape).toEqual([2, 10])
    expect(maxDiff(out.data.slice(0, 10), fromJson)).toBeLessThan(1e-6)
    expect(out.data.slice(10)).toEqual(out.data.slice(0, 10))
  })

  it('shows image inputs and labels in both protocols’ metadata', async () => {
    const v2 = (await (await call('/v2/models/digits')).json()) as {
      inputs: unknown[]
      parameters: { labels: string[] }
    }
    expect(v2.inputs).toEqual([
      {
        name: 'image',
        datatype: 'BYTES',
        shape: [-1],
        parameters: {
          content_types: ['image/jpeg', 'image/png', 'image/webp'],
          image: { size: [28, 28], channels: 1, range: [0, 1], fit: 'stretch', layout: 'nhwc' },
        },
      },
    ])
    expect(v2.parameters.labels).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
    const fromFile = (await (await call('/v2/models/digits-labels-file')).json()) as {
      parameters: { labels: string[] }
    }
    expect(fromFile.parameters.labels[0]).toBe('zero')
    const tfs = (await (await call('/v1/models/digits/metadata')).json()) as {
      metadata: {
        labels: string[]
        signature_def: { signature_def: { serving_default: { inputs: Record<string, unknown> } } }
      }
    }
    expect(tfs.metadata.signature_def.signature_def.serving_default.inputs.image).toMatchObject({
      dtype: 'DT_STRING',
      tensor_shape: { dim: [{ size: '-1' }] },
    })
    expect(tfs.metadata.labels).toHaveLength(10)
  })
})

/** A PNG signature and IHDR declaring `width × height`, then `padding` bytes of an IDAT that never ends. */
function declaredPng(width: number, height: number, padding: number): Uint8Array {
  const bytes = new Uint8Array(8 + 25 + 8 + padding)
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
  const view = new DataView(bytes.buffer)
  view.setUint32(8, 13)
  bytes.set([0x49, 0x48, 0x44, 0x52], 12)
  view.setUint32(16, width)
  view.setUint32(20, height)
  bytes.set([8, 2, 0, 0, 0], 24)
  view.setUint32(33, padding)
  bytes.set([0x49, 0x44, 0x41, 0x54], 37)
  return bytes
}

describe('bad images: a clear 4xx, nothing leaked', () => {
  const error = async (res: Response) => ((await res.json()) as { error: string }).error

  it('refuses an image past MAX_IMAGE_BYTES or MAX_IMAGE_PIXELS with 413 naming the limit', async () => {
    const small = { ...env, MAX_IMAGE_BYTES: '1000' }
    const big = await photo('chelsea.png')
    let res = await postImage('/v1/models/digits:classify', big, 'image/png', small)
    expect([res.status, await error(res)]).toEqual([413, expect.stringMatching(/MAX_IMAGE_BYTES/)])
    res = await post('/v1/models/digits:predict', { instances: [{ b64: base64(big) }] }, {}, small)
    expect([res.status, await error(res)]).toEqual([413, expect.stringMatching(/MAX_IMAGE_BYTES/)])
    // 35 KB that declare 60000×60000: refused from the header, before any pixel is decoded.
    res = await postImage('/v1/models/digits:classify', declaredPng(60000, 60000, 35_000), 'image/png')
    expect([res.status, await error(res)]).toEqual([
      413,
      expect.stringMatching(/60000×60000, 3600000000 pixels, more than the limit of 4000000 \(MAX_IMAGE_PIXELS\)/),
    ])
  })

  it('refuses a photo sent where JSON is read (no content type, JSON or a form type) with 415 naming the format and the header', async () => {
    const cases: Array<[string, string | undefined, string, string]> = [
      // Python's requests.post(url, data=bytes) sends no Content-Type at all.
      ['chelsea.jpg', undefined, 'JPEG', 'image/jpeg'],
      ['chelsea.png', 'application/json', 'PNG', 'image/png'],
      // curl's -d without -H sends application/x-www-form-urlencoded.
      ['chelsea-lossless.webp', 'application/x-www-form-urlencoded', 'WebP', 'image/webp'],
    ]
    for (const [file, type, format, header] of cases) {
      const bytes = await photo(file)
      for (const path of ['/v1/models/digits:classify', '/v1/models/digits:predict', '/v2/models/digits/infer']) {
        const res = await call(path, { method: 'POST', body: bytes, headers: type ? { 'content-type': type } : {} })
        expect(res.headers.get('content-type'), `${file} to ${path}`).toMatch(/^application\/json/)
        expect([res.status, await error(res)], `${file} to ${path}`).toEqual([
          415,
          `the body is a ${format} image (it starts with ${format}'s signature), sent ${type ? `with content type '${type}'` : 'without a content type'} where JSON is read: ` +
            `send it to …:classify with the header 'Content-Type: ${header}', or base64-encoded inside JSON ({"b64": …} for TF Serving, a BYTES input for v2)`,
        ])
      }
    }
    // The same JPEG with its type is classified.
    const res = await postImage('/v1/models/digits:classify', await photo('chelsea.jpg'), 'image/jpeg')
    expect(res.status).toBe(200)
  })

  it('refuses a batch whose images add up past MAX_REQUEST_IMAGE_PIXELS, before decoding the one that crosses it', async () => {
    const budget = { ...env, MAX_REQUEST_IMAGE_PIXELS: String(2 * 28 * 28) }
    const b64 = { b64: base64(digitPng(0)) }
    expect((await post('/v1/models/digits:predict', { instances: [b64, b64] }, {}, budget)).status).toBe(200)
    const res = await post('/v1/models/digits:predict', { instances: [b64, b64, b64] }, {}, budget)
    expect([res.status, await error(res)]).toEqual([
      413,
      expect.stringMatching(
        /^instances\[2\]: the request's images add up to more than 1568 pixels \(MAX_REQUEST_IMAGE_PIXELS\)/,
      ),
    ])
  })

  it.each([
    [
      'a truncated PNG',
      async () => (await photo('chelsea.png')).subarray(0, 20_000),
      'image/png',
      400,
      /PNG image is truncated or corrupt/,
    ],
    [
      'a truncated JPEG',
      async () => (await photo('chelsea.jpg')).subarray(0, 5_000),
      'image/jpeg',
      400,
      /JPEG image is truncated or corrupt/,
    ],
    [
      'text sent as image/jpeg',
      async () => new TextEncoder().encode('hello, I am not a photo'),
      'image/jpeg',
      400,
      /not a JPEG, PNG or WebP image/,
    ],
    [
      'a GIF sent as image/png',
      async () => Uint8Array.from(atob('R0lGODlhAQABAAAAACw='), (c) => c.charCodeAt(0)),
      'image/png',
      400,
      /a GIF image; send JPEG, PNG or WebP/,
    ],
    [
      'an unsupported content type',
      async () => digitPng(0),
      'image/gif',
      415,
      /content type 'image\/gif' is not supported/,
    ],
  ])('answers %s', async (_, bytes, type, status, message) => {
    const res = await postImage('/v1/models/digits:classify', await bytes(), type)
    expect([res.status, await error(res)]).toEqual([status, expect.stringMatching(message)])
  })

  it.each([
    [
      'invalid base64',
      '/v1/models/digits:predict',
      { instances: [{ b64: 'not base64!' }] },
      /instances\[0\]\.b64: invalid base64/,
    ],
    [
      'a b64 to a model without image preprocessing',
      '/v1/models/iris:predict',
      { instances: [{ b64: 'AAAA' }] },
      /input '.+' of model 'iris' has no image preprocessing/,
    ],
    [
      ':classify on a model without labels',
      '/v1/models/iris:classify',
      { examples: [{ x: 1 }] },
      /model 'iris' has no labels/,
    ],
    [
      'BYTES to an input that takes numbers',
      '/v2/models/iris/infer',
      { inputs: [{ name: 'features', datatype: 'BYTES', shape: [1], data: ['AAAA'] }] },
      /has no image preprocessing/,
    ],
  ])('answers %s with 400', async (_, path, body, message) => {
    const res = await post(path, body)
    expect([res.status, await error(res)]).toEqual([400, expect.stringMatching(message)])
  })

  it('answers 1,000 hostile images with 4xx, leaving tf.memory() and the cache as they were', async () => {
    const sources = [
      digitPng(5),
      await photo('chelsea-small.jpg'),
      encodePng({ width: 3, height: 2, channels: 4, depth: 8, data: new Uint8Array(24).fill(200) }),
    ]
    await postImage('/v1/models/digits:classify', sources[0]!, 'image/png') // loaded before counting
    const tensors = tf.memory().numTensors
    const cached = JSON.stringify(
      isolate()
        .cache.list()
        .map((m) => m.key),
    )
    const hostile = fc.oneof(
      // Truncations, flipped bytes, rewritten header bytes, random bytes behind a real signature, random bytes.
      fc.tuple(fc.constantFrom(...sources), fc.nat()).map(([s, n]) => s.subarray(0, n % s.length)),
      fc
        .tuple(
          fc.constantFrom(...sources),
          fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 8 }),
        )
        .map(([s, edits]) => {
          const copy = s.slice()
          for (const [at, byte] of edits) copy[at % Math.min(copy.length, 64)] = byte
          return copy
        }),
      fc
        .tuple(fc.constantFrom(...sources), fc.uint8Array({ minLength: 1, maxLength: 2000 }))
        .map(([s, tail]) => Uint8Array.from([...s.subarray(0, 16), ...tail])),
      fc.uint8Array({ maxLength: 3000 }),
    )
    let refused = 0
    await fc.assert(
      fc.asyncProperty(hostile, fc.constantFrom('image/png', 'image/jpeg', 'image/webp'), async (bytes, type) => {
        const res = await postImage('/v1/models/digits:classify', bytes, type)
        // A few edits leave an image that still decodes: 200 is a right answer for those.
        expect(
          res.status === 200 || res.status === 400 || res.status === 413,
          `${res.status} ${await res.clone().text()}`,
        ).toBe(true)
        if (res.status !== 200) refused++
        const body = await res.text()
        expect(body).not.toMatch(/at |wasm|\.js|\.rs|Error:/)
      }),
      { numRuns: 1000 },
    )
    // Most are refused; a few edits leave an image that decodes.
    expect(refused).toBeGreaterThan(800)
    expect(tf.memory().numTensors).toBe(tensors)
    expect(
      JSON.stringify(
        isolate()
          .cache.list()
          .map((m) => m.key),
      ),
    ).toBe(cached)
    const next = (await (await postImage('/v1/models/digits:classify', digitPng(5), 'image/png')).json()) as Ranked[]
    expect(next[0]!.label).toBe(String(digits.labels[5]))
  })
})
