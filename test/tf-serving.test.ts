import { app } from '../src/http/app'
import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { tf } from '../src/runtime/tf'
import { call, expectNotAllowed, post, SETOSA } from './support/helpers'
import digits from './fixtures/digits-holdout.json'
import { isolate, resetIsolate } from '../src/isolate'

const VIRGINICA = [6.7, 3.0, 5.2, 2.3]
const image = (i: number) =>
  Array.from({ length: 28 }, (_, r) => Array.from({ length: 28 }, (_, c) => [digits.images[i]![r * 28 + c]!]))
const argmax = (row: number[]) => row.indexOf(Math.max(...row))

beforeEach(() => {
  resetIsolate()
})

describe('POST /v1/models/{m}:predict', () => {
  it('answers row format with predictions, setosa first for a setosa flower', async () => {
    const res = await post('/v1/models/iris:predict', { instances: [SETOSA, VIRGINICA] })
    expect(res.status).toBe(200)
    const body = await res.json<{ predictions: number[][] }>()
    expect(body.predictions).toHaveLength(2)
    expect(argmax(body.predictions[0]!)).toBe(0)
    expect(argmax(body.predictions[1]!)).toBe(2)
    expect(body.predictions[0]!.reduce((a, b) => a + b)).toBeCloseTo(1, 5)
  })

  it('says miss, then hit, and reports load and inference time', async () => {
    const first = await post('/v1/models/iris:predict', { instances: [SETOSA] })
    expect(first.headers.get('x-model-cache')).toBe('miss')
    expect(first.headers.get('server-timing')).toMatch(/^load;dur=\d+;desc="miss", infer;dur=\d+$/)
    expect(first.headers.get('x-model-version')).toBe('1')
    const second = await post('/v1/models/iris:predict', { instances: [SETOSA] })
    expect(second.headers.get('x-model-cache')).toBe('hit')
    expect(second.headers.get('server-timing')).toMatch(/^infer;dur=\d+$/)
    expect(await second.json()).toEqual(await first.json())
    expect(isolate().cache.counters).toMatchObject({ loads: 1, misses: 1, hits: 1 })
  })

  it('builds once for 50 concurrent first requests through the Worker', async () => {
    // With their Content-Length, as HTTP clients send a body of known size: a body without one (chunked) reserves
    // MAX_BODY_BYTES of REQUEST_MEMORY_BYTES until it is read, so only four of them would be read at once.
    const body = JSON.stringify({ instances: [SETOSA] })
    const responses = await Promise.all(
      Array.from({ length: 50 }, () =>
        post('/v1/models/iris:predict', body, { 'content-length': String(new TextEncoder().encode(body).length) }),
      ),
    )
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200))
    const outcomes = responses.map((r) => r.headers.get('x-model-cache'))
    expect(outcomes.filter((o) => o === 'miss')).toHaveLength(1)
    expect(outcomes.filter((o) => o === 'joined')).toHaveLength(49)
    expect(isolate().cache.counters.loads).toBe(1)
  })

  it('answers columnar format with outputs, equal to the row format', async () => {
    const rows = await (
      await post('/v1/models/iris:predict', { instances: [SETOSA, VIRGINICA] })
    ).json<{ predictions: unknown }>()
    const cols = await post('/v1/models/iris:predict', { inputs: [SETOSA, VIRGINICA] })
    expect(cols.status).toBe(200)
    expect(await cols.json()).toEqual({ outputs: rows.predictions })
  })

  it('takes inputs and instances keyed by the input name', async () => {
    const meta = await (await call('/v1/models/iris/metadata')).json<any>()
    const name = Object.keys(meta.metadata.signature_def.signature_def.serving_default.inputs)[0]!
    const expected = await (await post('/v1/models/iris:predict', { instances: [SETOSA] })).json()
    expect(await (await post('/v1/models/iris:predict', { instances: [{ [name]: SETOSA }] })).json()).toEqual(expected)
    const cols = await (await post('/v1/models/iris:predict', { inputs: { [name]: [SETOSA] } })).json<any>()
    expect(cols.outputs).toEqual((expected as any).predictions)
  })

  it('serves a pinned version and accepts signature_name serving_default', async () => {
    const res = await post('/v1/models/digits/versions/1:predict', {
      signature_name: 'serving_default',
      instances: [image(0)],
    })
    expect(res.status).toBe(200)
    const body = await res.json<{ predictions: number[][] }>()
    expect(argmax(body.predictions[0]!)).toBe(digits.labels[0])
  })

  it('classifies held-out digits at the accuracy the training reported', async () => {
    const n = 64
    const res = await post('/v1/models/digits:predict', { instances: Array.from({ length: n }, (_, i) => image(i)) })
    expect(res.status).toBe(200)
    const { predictions } = await res.json<{ predictions: number[][] }>()
    const correct = predictions.filter((p, i) => argmax(p) === digits.labels[i]).length
    expect(correct / n).toBeGreaterThanOrEqual(0.95)
  })

  it('leaves no tensor behind after a request', async () => {
    await post('/v1/models/iris:predict', { instances: [SETOSA] })
    const before = tf.memory().numTensors
    for (let i = 0; i < 5; i++) await post('/v1/models/iris:predict', { instances: [SETOSA, VIRGINICA] })
    await post('/v1/models/iris:predict', { instances: [[1, 2, 3]] }) // a refused one too
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('GET /v1/models/{m}', () => {
  it('reports the served version as AVAILABLE', async () => {
    const res = await call('/v1/models/iris')
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({
      model_version_status: [{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }],
    })
  })

  it('reports a pinned version', async () => {
    const res = await call('/v1/models/digits/versions/1')
    expect((await res.json<any>()).model_version_status[0].version).toBe('1')
  })

  it("gives metadata in TF Serving's shape", async () => {
    const res = await call('/v1/models/digits/metadata')
    expect(res.status).toBe(200)
    const body = await res.json<any>()
    expect(body.model_spec).toEqual({ name: 'digits', signature_name: '', version: '1' })
    const def = body.metadata.signature_def.signature_def.serving_default
    expect(def.method_name).toBe('tensorflow/serving/predict')
    // The digits model's input is an image (config.json inputs.image): it takes encoded images, one string per row.
    const [input] = Object.values<any>(def.inputs)
    expect(input.dtype).toBe('DT_STRING')
    expect(input.tensor_shape.dim.map((d: any) => d.size)).toEqual(['-1'])
    const [output] = Object.values<any>(def.outputs)
    expect(output.tensor_shape.dim.map((d: any) => d.size)).toEqual(['-1', '10'])
  })
})

describe('client mistakes get a 4xx that says what was wrong and where', () => {
  const cases: [string, string, RequestInit | unknown, number, RegExp][] = [
    ['unknown model', '/v1/models/nope:predict', { instances: [SETOSA] }, 404, /model 'nope' not found/],
    [
      'unknown version',
      '/v1/models/iris/versions/7:predict',
      { instances: [SETOSA] },
      404,
      /no version 7; versions: 1/,
    ],
    [
      'a version that is not a number',
      '/v1/models/iris/versions/latest:predict',
      { instances: [SETOSA] },
      400,
      /version 'latest' is not a positive integer/,
    ],
    ['an unsupported verb', '/v1/models/iris:regress', { instances: [SETOSA] }, 404, /':regress' is not supported/],
    ['malformed JSON', '/v1/models/iris:predict', '{"instances": [[1,2', 400, /malformed JSON/],
    ['an empty body', '/v1/models/iris:predict', '', 400, /body is empty/],
    ['a body that is not an object', '/v1/models/iris:predict', '[1,2]', 400, /must be a JSON object, got an array/],
    [
      'neither instances nor inputs',
      '/v1/models/iris:predict',
      { examples: [] },
      400,
      /exactly one of 'instances'.*or 'inputs'/,
    ],
    [
      'both instances and inputs',
      '/v1/models/iris:predict',
      { instances: [SETOSA], inputs: [SETOSA] },
      400,
      /exactly one of/,
    ],
    [
      'instances that is not a list',
      '/v1/models/iris:predict',
      { instances: 3 },
      400,
      /'instances': 'instances' must be a list/,
    ],
    ['no rows', '/v1/models/iris:predict', { instances: [] }, 400, /'instances' is empty/],
    [
      'an unknown signature',
      '/v1/models/iris:predict',
      { signature_name: 'classify', instances: [SETOSA] },
      400,
      /signature 'classify' not found/,
    ],
    [
      'brackets in a string, which do not nest',
      '/v1/models/iris:predict',
      { signature_name: '[{'.repeat(100), instances: [SETOSA] },
      400,
      /signature '(\[\{){20}…' \(200 characters\) not found/,
    ],
    [
      'the wrong row length',
      '/v1/models/iris:predict',
      { instances: [SETOSA, [1, 2, 3]] },
      400,
      /instances\[1\]: expected 4 values like its siblings, got 3/,
    ],
    [
      'the wrong width in every row',
      '/v1/models/iris:predict',
      { instances: [[1, 2, 3]] },
      400,
      /dimension 1 must be 4 \(shape \[-1, 4\]\), got 3/,
    ],
    [
      'the wrong rank',
      '/v1/models/iris:predict',
      { instances: [1, 2, 3, 4] },
      400,
      /expected rank 2 with shape \[-1, 4\], got rank 1/,
    ],
    [
      'a string for a number',
      '/v1/models/iris:predict',
      { instances: [[1, 2, 'NaN', 4]] },
      400,
      /instances\[0\]\[2\]: expected a number \(FP32\), got the string "NaN"/,
    ],
    [
      'null for a number',
      '/v1/models/iris:predict',
      { instances: [[1, null, 3, 4]] },
      400,
      /instances\[0\]\[1\]: expected a number \(FP32\), got null/,
    ],
    [
      'a number out of float32 range',
      '/v1/models/iris:predict',
      { instances: [[1, 2, 3, 1e300]] },
      400,
      /instances\[0\]\[3\]: 1e\+300 is out of FP32 range/,
    ],
    [
      'ragged nesting',
      '/v1/models/iris:predict',
      { instances: [[1, 2, 3, [4]]] },
      400,
      /instances\[0\]\[3\]: expected a scalar .* got an array/,
    ],
    [
      'an unknown input name',
      '/v1/models/iris:predict',
      { inputs: { petals: [SETOSA] } },
      400,
      /inputs: unknown input 'petals'; the model's inputs are '/,
    ],
    [
      'an instance that is not an object like the first',
      '/v1/models/iris:predict',
      { instances: [{ x: SETOSA }, SETOSA] },
      400,
      /unknown input 'x'/,
    ],
    [
      'an empty row to a model of any width',
      '/v1/models/positives:predict',
      { instances: [[]] },
      400,
      /^instances: dimension 1 of shape \[1, 0\] is 0; an input needs at least one element$/,
    ],
    [
      'a digit image of the wrong size',
      '/v1/models/digits:predict',
      { instances: [[[[0]]]] },
      400,
      /dimension 1 must be 28 \(shape \[-1, 28, 28, 1\]\), got 1/,
    ],
  ]
  it.each(cases)('%s', async (_name, path, body, status, message) => {
    const res = await post(path, body)
    expect(res.status).toBe(status)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect((await res.json<{ error: string }>()).error).toMatch(message)
  })

  it('refuses a batch larger than MAX_BATCH_SIZE', async () => {
    const res = await post('/v1/models/iris:predict', { instances: Array(65).fill(SETOSA) })
    expect(res.status).toBe(400)
    expect((await res.json<any>()).error).toMatch(/65 rows, more than the limit of 64 \(MAX_BATCH_SIZE\)/)
  })

  it('refuses more tensor elements than MAX_TENSOR_ELEMENTS', async () => {
    const res = await post('/v1/models/iris:predict', { instances: Array(20).fill(SETOSA) }, {}, {
      ...env,
      MAX_TENSOR_ELEMENTS: '40',
    } as Env)
    expect(res.status).toBe(400)
    expect((await res.json<any>()).error).toMatch(/more than 40 tensor elements in one request \(MAX_TENSOR_ELEMENTS\)/)
  })

  it('names a value in a message without serializing it, however large it is', async () => {
    const wide = JSON.stringify({ instances: [{ features: SETOSA }, Array(1_000_000).fill(0)] })
    const longName = JSON.stringify({ inputs: { ['x'.repeat(1_000_000)]: [SETOSA] } })
    const stringify = vi.spyOn(JSON, 'stringify')
    try {
      const unlike = await post('/v1/models/iris:predict', wide)
      expect((await unlike.json<any>()).error).toBe(
        'instances[1]: expected an object keyed by input name like instances[0], got an array',
      )
      const named = await post('/v1/models/iris:predict', longName)
      expect((await named.json<any>()).error).toMatch(
        /^inputs: unknown input 'x{40}…' \(1000000 characters\); the model's inputs are 'features'$/,
      )
      // The work is bounded: nothing serialized on the way (messages, log lines) comes near the value's size.
      const lengths = stringify.mock.results.map((r) => (typeof r.value === 'string' ? r.value.length : 0))
      expect(Math.max(...lengths)).toBeLessThan(1_000)
    } finally {
      stringify.mockRestore()
    }
  })

  it('refuses a body nested deeper than MAX_JSON_DEPTH without parsing it', async () => {
    const levels = 1_000_000
    const deep = `{"instances":[${'['.repeat(levels)}${']'.repeat(levels)}]}`
    const parse = vi.spyOn(JSON, 'parse')
    try {
      const res = await post('/v1/models/iris:predict', deep)
      expect(res.status).toBe(400)
      // The 65th level opens at byte 76: '{', then '"instances":' and 63 more brackets before it.
      expect((await res.json<any>()).error).toBe(
        'request body nests deeper than 64 levels (at byte 76); no request needs that many',
      )
      expect(parse.mock.calls.filter(([text]) => typeof text === 'string' && text.length >= levels)).toHaveLength(0)
    } finally {
      parse.mockRestore()
    }
  })

  it('answers 413 past MAX_BODY_BYTES, whether the length is declared or not', async () => {
    const small = { ...env, MAX_BODY_BYTES: '100' } as Env
    const body = JSON.stringify({ instances: Array(10).fill(SETOSA) })
    const declared = await post('/v1/models/iris:predict', body, {}, small)
    expect(declared.status).toBe(413)
    expect((await declared.json<any>()).error).toMatch(/exceeds the limit of 100 bytes \(MAX_BODY_BYTES\)/)
    const stream = new Blob([body]).stream() // no Content-Length: counted while reading
    const chunked = await call(
      '/v1/models/iris:predict',
      { method: 'POST', body: stream, headers: { 'content-type': 'application/json' } },
      small,
    )
    expect(chunked.status).toBe(413)
  })

  it('admits a 224×224×3 float image as JSON under the default body limit', async () => {
    const img = Array.from({ length: 224 }, () =>
      Array.from({ length: 224 }, () => [Math.random(), Math.random(), Math.random()]),
    )
    const body = JSON.stringify({ instances: [img] })
    expect(body.length).toBeGreaterThan(3_000_000)
    const res = await post('/v1/models/digits:predict', body)
    expect(res.status).toBe(400) // read and parsed in full; refused only for its shape
    expect((await res.json<any>()).error).toMatch(/dimension 1 must be 28/)
  })

  it('answers 415 for a body that is not JSON, and takes curl -d as JSON', async () => {
    const xml = await post('/v1/models/iris:predict', '<instances/>', { 'content-type': 'application/xml' })
    expect(xml.status).toBe(415)
    expect((await xml.json<any>()).error).toMatch(/content type 'application\/xml' is not supported/)
    const curl = await post(
      '/v1/models/iris:predict',
      { instances: [SETOSA] },
      { 'content-type': 'application/x-www-form-urlencoded' },
    )
    expect(curl.status).toBe(200)
  })

  it("is routed by Hono's RegExpRouter (one regular expression), not its TrieRouter (a search of every route per request)", async () => {
    await call('/v1/models/iris')
    // A route that RegExpRouter cannot hold (one path under two parameter names) makes Hono fall back to the trie.
    expect((app as unknown as { router: { name: string } }).router.name).toBe('SmartRouter + RegExpRouter')
  })

  it.each([
    ['GET', '/v1/models/iris:predict', 'POST'],
    ['PUT', '/v1/models/iris', 'GET, POST'],
    ['POST', '/v1/models/iris', 'GET'],
    ['DELETE', '/v1/models/iris/metadata', 'GET'],
    ['GET', '/v1/models/iris/versions/1:predict', 'POST'],
  ])('answers 405 to %s %s with Allow: %s', expectNotAllowed)

  it('answers 404 for an unknown route', async () => {
    const res = await call('/v1/nothing')
    expect(res.status).toBe(404)
    expect(await res.json()).toEqual({ error: 'no route for GET /v1/nothing' })
  })
})

describe('health', () => {
  it('is live and ready', async () => {
    expect(await (await call('/v2/health/live')).json()).toEqual({ live: true })
    const ready = await call('/v2/health/ready')
    expect(ready.status).toBe(200)
    expect(await ready.json()).toMatchObject({ ready: true, backend: expect.stringMatching(/^(wasm|cpu)$/) })
  })
})

describe('MODEL_CACHE=off, the baseline the cache is measured against', () => {
  it('builds the model for every request and frees it after, answering the same', async () => {
    const off = { ...env, MODEL_CACHE: 'off' } as Env
    await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, off) // the backend's own first-use state
    const before = tf.memory().numTensors
    const answers = []
    for (let i = 0; i < 3; i++) {
      const res = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, off)
      expect(res.headers.get('x-model-cache')).toBe('miss')
      answers.push(await res.json())
      expect(tf.memory().numTensors).toBe(before)
    }
    expect(answers[1]).toEqual(answers[0])
    expect(isolate().cache.list()).toEqual([])
  })
})
