// The service-binding entrypoint `Models`, called from a second Worker (test/e2e/support/caller/index.js, an
// auxiliary Worker of the pool, see vitest.config.ts), and the prediction cache, over HTTP and RPC.
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { describe, expect, it, vi } from 'vitest'
import worker from '../src/index'
import { isolate } from '../src/isolate'
import digits from './fixtures/digits-holdout.json'
import { call, post, SETOSA } from './support/helpers'
import { digitPng } from './support/digits'

type Outcome<T = any> = { value?: T; error?: { message: string; status?: number; isError: boolean } }
const caller = (env as unknown as { RPC_CALLER: { call(method: string, ...args: unknown[]): Promise<Outcome> } })
  .RPC_CALLER

/** Calls `env.MODELS[method](...args)` from the other Worker; what it saw. */
const rpc = <T = any>(method: 'run' | 'infer' | 'metadata' | 'list', ...args: unknown[]) =>
  caller.call(method, ...args) as Promise<Outcome<T>>

const postImage = (path: string, bytes: Uint8Array, headers: Record<string, string> = {}) =>
  call(path, { method: 'POST', body: bytes, headers: { 'content-type': 'image/png', ...headers } })
const VERSICOLOR = [6.4, 3.2, 4.5, 1.5]

describe('Models, called through a service binding', () => {
  it('run: a TF Serving body gets the answer :predict gives, in both formats, for a version or a label', async () => {
    const http = await (await post('/v1/models/iris:predict', { instances: [SETOSA, VERSICOLOR] })).json()
    expect(await rpc('run', 'iris', { instances: [SETOSA, VERSICOLOR] })).toEqual({ value: http })
    const columnar = await (await post('/v1/models/iris/versions/1:predict', { inputs: [SETOSA] })).json()
    expect(await rpc('run', 'iris', { inputs: [SETOSA] }, { version: 1 })).toEqual({ value: columnar })
    expect((await rpc('run', 'iris', { instances: [SETOSA] }, { label: 'stable' })).error).toMatchObject({
      message: expect.stringMatching(/label 'stable'/),
    })
  })

  it('run: {image} on an image model gets [{label, score}] as :classify does, from bytes, an ArrayBuffer or numbers', async () => {
    const png = digitPng(0)
    const http = await (await postImage('/v1/models/digits:classify', png)).json<any[]>()
    expect(http).toHaveLength(3)
    for (const image of [png, png.slice().buffer, Array.from(png)])
      expect(await rpc('run', 'digits', { image })).toEqual({ value: http })
    const top1 = await rpc<Array<{ label: string }>>('run', 'digits', { image: png }, { top_k: 1 })
    expect(top1.value).toEqual([http[0]])
    expect(top1.value![0]!.label).toBe(String(digits.labels[0]))
  })

  it('infer: typed arrays in, typed arrays out, the numbers /infer answers', async () => {
    const request = {
      id: 'r1',
      inputs: [{ name: 'features', datatype: 'FP32', shape: [2, 4], data: [...SETOSA, ...VERSICOLOR] }],
    }
    const http = await (await post('/v2/models/iris/infer', request)).json<any>()
    const typed = await rpc('infer', 'iris', {
      ...request,
      inputs: [{ ...request.inputs[0], data: Float32Array.from(request.inputs[0]!.data) }],
    })
    const output = typed.value.outputs[0]
    expect(output.data).toBeInstanceOf(Float32Array)
    expect({ ...typed.value, outputs: [{ ...output, data: Array.from(output.data) }] }).toEqual(http)
    // BYTES elements as byte arrays: the digits model's image input.
    const bytes = await rpc('infer', 'digits', {
      inputs: [{ name: 'image', datatype: 'BYTES', shape: [2], data: [digitPng(0), digitPng(20)] }],
    })
    expect(bytes.value.outputs[0].shape).toEqual([2, 10])
  })

  it('metadata and list: what GET /v2/models/{m} and the repository index answer', async () => {
    expect(await rpc('metadata', 'digits')).toEqual({ value: await (await call('/v2/models/digits')).json() })
    const list = await rpc<Array<{ name: string; version: string }>>('list')
    expect(list.value).toEqual(await (await post('/v2/repository/index', {})).json())
    expect(list.value!.map((e) => e.name)).toEqual(expect.arrayContaining(['iris', 'digits', 'cache-iris']))
  })

  it('bad calls reject with an Error carrying the HTTP message and status', async () => {
    const cases: Array<[string, Promise<Outcome>, string, unknown?]> = [
      [
        'an unknown model',
        rpc('run', 'nope', { instances: [SETOSA] }),
        '/v1/models/nope:predict',
        { instances: [SETOSA] },
      ],
      [
        'a body with neither format',
        rpc('run', 'iris', { rows: [SETOSA] }),
        '/v1/models/iris:predict',
        { rows: [SETOSA] },
      ],
      [
        'a ragged row',
        rpc('run', 'iris', { instances: [[1, 2, 3]] }),
        '/v1/models/iris:predict',
        { instances: [[1, 2, 3]] },
      ],
      ['an unknown version', rpc('metadata', 'iris', { version: 9 }), '/v2/models/iris/versions/9'],
    ]
    for (const [what, outcome, path, body] of cases) {
      const http = body === undefined ? await call(path) : await post(path, body)
      const { error } = await outcome
      expect(error, what).toEqual({
        message: ((await http.json()) as { error: string }).error,
        status: http.status,
        isError: true,
      })
    }
    const notImage = await rpc('run', 'iris', { image: digitPng(0) })
    expect(notImage.error).toEqual({
      status: 400,
      isError: true,
      message: `model 'iris' has no labels, so it cannot classify; add "labels" to its config.json, or call :predict`,
    })
    expect((await rpc('run', 'digits', { image: [0, 256] })).error).toMatchObject({
      status: 400,
      message: 'image[1]: expected a byte (an integer 0–255), got number 256',
    })
    expect(
      (
        await rpc('infer', 'iris', {
          inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 4], data: Int32Array.from([1, 2, 3, 4]) }],
        })
      ).error,
    ).toMatchObject({
      status: 400,
      message: "input 'features': data is a Int32Array, but datatype FP32 takes a Float32Array",
    })
  })
})

describe('the prediction cache', () => {
  const scrape = async () => (await call('/metrics')).text()
  const counter = (text: string, name: string, model: string) =>
    Number(text.match(new RegExp(`^${name}\\{model="${model}"\\} (\\d+)$`, 'm'))?.[1] ?? 0)

  it('answers the same tensor from the cache, however it was sent, and never across versions, formats or errors', async () => {
    const before = await scrape()
    const first = await post('/v1/models/cache-iris/versions/1:predict', { instances: [SETOSA] })
    expect(first.headers.get('X-Prediction-Cache')).toBe('miss')
    const answer = await first.json()
    // Whitespace, the float written otherwise: the same parsed tensor.
    const spaced = await post(
      '/v1/models/cache-iris/versions/1:predict',
      `{ "instances" : [ [ 5.10, 3.5, 1.4, 0.2 ] ] }`,
    )
    expect([spaced.headers.get('X-Prediction-Cache'), await spaced.json()]).toEqual(['hit', answer])
    // Through the service binding: the same entry.
    expect(await rpc('run', 'cache-iris', { instances: [SETOSA] }, { version: 1 })).toEqual({ value: answer })
    // The columnar format answers in another shape: its own entry.
    expect(
      (await post('/v1/models/cache-iris/versions/1:predict', { inputs: [SETOSA] })).headers.get('X-Prediction-Cache'),
    ).toBe('miss')
    // A new version never serves an old entry.
    const v2 = await post('/v1/models/cache-iris/versions/2:predict', { instances: [SETOSA] })
    expect([v2.headers.get('X-Prediction-Cache'), v2.headers.get('X-Model-Version')]).toEqual(['miss', '2'])
    // Cache-Control: no-cache runs the model.
    const bypass = await post(
      '/v1/models/cache-iris/versions/1:predict',
      { instances: [SETOSA] },
      { 'cache-control': 'no-cache' },
    )
    expect([bypass.headers.get('X-Prediction-Cache'), bypass.headers.get('Server-Timing')]).toEqual([
      'miss',
      expect.stringMatching(/^infer;dur=/),
    ])
    // Errors are not cached: the same bad request is refused twice, with no cache header.
    for (let i = 0; i < 2; i++) {
      const bad = await post('/v1/models/cache-iris/versions/1:predict', { instances: [[1, 2, 3]] })
      expect([bad.status, bad.headers.get('X-Prediction-Cache')]).toEqual([400, null])
    }
    // A model without response_cache says nothing of it.
    expect((await post('/v1/models/iris:predict', { instances: [SETOSA] })).headers.has('X-Prediction-Cache')).toBe(
      false,
    )
    const after = await scrape()
    expect(
      counter(after, 'warmserve_prediction_cache_hits_total', 'cache-iris') -
        counter(before, 'warmserve_prediction_cache_hits_total', 'cache-iris'),
    ).toBe(2)
    expect(
      counter(after, 'warmserve_prediction_cache_misses_total', 'cache-iris') -
        counter(before, 'warmserve_prediction_cache_misses_total', 'cache-iris'),
    ).toBe(4)
  })

  it('gives JSON, the binary extension and typed arrays of one tensor one entry', async () => {
    const features = [6.1, 2.8, 4.7, 1.2]
    const json = await post('/v2/models/cache-iris/versions/1/infer', {
      inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 4], data: features }],
    })
    expect(json.headers.get('X-Prediction-Cache')).toBe('miss')
    const answer = await json.json<any>()
    const header = new TextEncoder().encode(
      JSON.stringify({
        inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } }],
      }),
    )
    const body = new Uint8Array(header.length + 16)
    body.set(header)
    body.set(new Uint8Array(Float32Array.from(features).buffer), header.length)
    const binary = await call('/v2/models/cache-iris/versions/1/infer', {
      method: 'POST',
      body,
      headers: { 'Inference-Header-Content-Length': String(header.length) },
    })
    expect([binary.headers.get('X-Prediction-Cache'), await binary.json()]).toEqual(['hit', answer])
    const typed = await rpc(
      'infer',
      'cache-iris',
      { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 4], data: Float32Array.from(features) }] },
      { version: 1 },
    )
    expect(Array.from(typed.value.outputs[0].data)).toEqual(answer.outputs[0].data)
  })

  it('answers miss on a *.workers.dev host, which has no Cache API, logging it once, and keeps serving', async () => {
    const warn = vi.spyOn(console, 'warn')
    try {
      for (let i = 0; i < 3; i++) {
        const ctx = createExecutionContext()
        const request = new Request('https://warmserve.example.workers.dev/v1/models/cache-iris/versions/1:predict', {
          method: 'POST',
          body: JSON.stringify({ instances: [[4.9, 3.0, 1.4, 0.2]] }),
        })
        const res = await worker.fetch(request, env, ctx)
        await waitOnExecutionContext(ctx)
        expect([res.status, res.headers.get('X-Prediction-Cache')]).toEqual([200, 'miss'])
      }
      expect(warn.mock.calls.filter(([line]) => String(line).includes('prediction_cache.unavailable'))).toHaveLength(1)
    } finally {
      warn.mockRestore()
    }
  })

  it('serves concurrent HTTP and RPC callers from one model cache and one prediction cache', async () => {
    const png = digitPng(40)
    const loadsBefore = isolate().status(env).counters.loads
    const expected = await (
      await postImage('/v1/models/cache-digits:classify', png, { 'cache-control': 'no-cache' })
    ).json()
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        i % 2 === 0
          ? postImage('/v1/models/cache-digits:classify', png).then((r) => r.json())
          : rpc('run', 'cache-digits', { image: png }).then((o) => o.value),
      ),
    )
    for (const result of results) expect(result).toEqual(expected)
    expect(isolate().status(env).counters.loads - loadsBefore).toBe(1)
    expect((await postImage('/v1/models/cache-digits:classify', png)).headers.get('X-Prediction-Cache')).toBe('hit')
    // An image is keyed by its bytes before decoding; one that does not decode is refused every time.
    const broken = png.slice(0, 40)
    for (let i = 0; i < 2; i++) {
      const bad = await postImage('/v1/models/cache-digits:classify', broken)
      expect([bad.status, bad.headers.get('X-Prediction-Cache')]).toEqual([400, null])
    }
  })
})
