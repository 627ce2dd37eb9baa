// Open Inference Protocol (KServe v2) conformance: every endpoint, every error, flat and nested
// data, each datatype conversion and each refusal.
import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it } from 'vitest'
import { call, expectNotAllowed, post } from './support/helpers'
import { isolate, resetIsolate } from '../src/isolate'

beforeEach(() => {
  resetIsolate()
})

const pairInputs = (features: unknown = [1, 2, 3], multiplier: unknown = [2], datatypes = ['FP32', 'INT32']) => ({
  inputs: [
    { name: 'features', shape: [1, 3], datatype: datatypes[0], data: features },
    { name: 'multiplier', shape: [1, 1], datatype: datatypes[1], data: multiplier },
  ],
})
// scores = (x·W + b) * k with W = [[0.5, -1], [2, 0.25], [-0.75, 1.5]], b = [0.1, -0.2]; shifted = k + 1
const PAIR_SCORES = [4.7, 7.6] // features [1, 2, 3], multiplier 2

describe('server endpoints', () => {
  it('GET /v2 gives server metadata', async () => {
    expect(await (await call('/v2')).json()).toEqual({
      name: 'warmserve',
      version: expect.any(String),
      extensions: ['binary_tensor_data'],
    })
  })
  it('GET /v2/health/live and /ready', async () => {
    expect((await call('/v2/health/live')).status).toBe(200)
    expect((await call('/v2/health/ready')).status).toBe(200)
  })
})

describe('model endpoints', () => {
  it('GET /v2/models/{m} lists versions, platform, inputs and outputs', async () => {
    const res = await call('/v2/models/pair')
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({
      name: 'pair',
      versions: ['1'],
      platform: 'tensorflowjs_graph_model',
      inputs: [
        { name: 'features', datatype: 'FP32', shape: [-1, 3] },
        { name: 'multiplier', datatype: 'INT32', shape: [-1, 1] },
      ],
      outputs: [
        { name: 'scores', datatype: 'FP32', shape: [-1, 2] },
        { name: 'shifted', datatype: 'INT32', shape: [-1, 1] },
      ],
    })
  })

  it('GET /v2/models/{m} answers from the index without loading, and shows the memory once the model is loaded', async () => {
    resetIsolate()
    const before = await (await call('/v2/models/pair')).json<any>()
    expect(before.parameters).toBeUndefined()
    expect(isolate().status(env).models).toEqual([])
    await isolate()
      .lease(env, 'pair')
      .then(({ lease }) => lease.release())
    const after = await (await call('/v2/models/pair')).json<any>()
    // What the model costs in this isolate's memory with one row running (src/runtime/footprint.ts).
    expect(after.parameters).toEqual({ memory_bytes: expect.any(Number) })
    expect({ ...after, parameters: undefined }).toEqual({ ...before, parameters: undefined })
  })

  it('GET /v2/models/{m}/versions/{v} and a layers model', async () => {
    const body = await (await call('/v2/models/flower/versions/1')).json<any>()
    expect(body.platform).toBe('tensorflowjs_layers_model')
    expect(body.inputs.map((i: any) => i.name)).toEqual(['sepal', 'petal'])
    expect(body.outputs).toEqual([
      { name: 'species', datatype: 'FP32', shape: [-1, 3] },
      { name: 'size', datatype: 'FP32', shape: [-1, 1] },
    ])
  })

  it('a graph without a signature shows its placeholders and output nodes', async () => {
    const body = await (await call('/v2/models/pair-nosig')).json<any>()
    expect(body.inputs.map((i: any) => i.name)).toEqual(['x', 'k'])
    expect(body.outputs.map((o: any) => [o.name, o.datatype])).toEqual([
      ['Identity', 'FP32'],
      ['Identity_1', 'INT32'],
    ])
  })

  it("answers a layers model's metadata from the index without loading it, as the loaded model would", async () => {
    for (const name of ['iris', 'digits', 'flower']) {
      const before = await (await call(`/v2/models/${name}`)).json()
      expect(isolate().cache.status(`${name}/1`)).toBeUndefined() // not loaded, not loading
      expect((await call(`/v2/models/${name}/ready`)).status).toBe(200) // now it is
      // The same metadata (digits' description and labels too), and now also what the loaded model measures.
      const {
        parameters: { memory_bytes, ...parameters },
        ...after
      } = await (await call(`/v2/models/${name}`)).json<Record<string, any>>()
      expect(Object.keys(parameters).length > 0 ? { ...after, parameters } : after).toEqual(before)
      expect(memory_bytes).toBeGreaterThan(0)
    }
    expect(isolate().cache.counters.loads).toBe(3)
  })

  it('loads a bundled graph model to describe it, since warmup may refine its outputs', async () => {
    expect((await call('/v2/models/pair-nosig')).status).toBe(200)
    expect(
      isolate()
        .cache.list()
        .map((m) => m.key),
    ).toEqual(['pair-nosig/1'])
  })

  it('GET …/ready says ready', async () => {
    expect(await (await call('/v2/models/iris/ready')).json()).toEqual({ name: 'iris', ready: true })
    expect(await (await call('/v2/models/iris/versions/1/ready')).json()).toEqual({ name: 'iris', ready: true })
  })
})

describe('POST /v2/models/{m}/infer', () => {
  it('runs several named inputs and outputs, echoing the id', async () => {
    const res = await post('/v2/models/pair/infer', { id: 'req-7', parameters: { trace: true }, ...pairInputs() })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-model-cache')).toBe('miss')
    const body = await res.json<any>()
    expect(body).toMatchObject({ model_name: 'pair', model_version: '1', id: 'req-7' })
    expect(body.outputs[0]).toMatchObject({ name: 'scores', datatype: 'FP32', shape: [1, 2] })
    body.outputs[0].data.forEach((v: number, i: number) => expect(v).toBeCloseTo(PAIR_SCORES[i]!, 5))
    expect(body.outputs[1]).toEqual({ name: 'shifted', datatype: 'INT32', shape: [1, 1], data: [3] })
  })

  it('omits id when none was sent, and serves a pinned version', async () => {
    const body = await (await post('/v2/models/pair/versions/1/infer', pairInputs())).json<any>()
    expect(body).not.toHaveProperty('id')
    expect(body.model_version).toBe('1')
  })

  it('returns only the outputs asked for', async () => {
    const body = await (
      await post('/v2/models/pair/infer', { ...pairInputs(), outputs: [{ name: 'shifted' }] })
    ).json<any>()
    expect(body.outputs.map((o: any) => o.name)).toEqual(['shifted'])
  })

  it('takes nested data as well as flat', async () => {
    const flat = await (await post('/v2/models/pair/infer', pairInputs([1, 2, 3], [2]))).json<any>()
    const nested = await (await post('/v2/models/pair/infer', pairInputs([[1, 2, 3]], [[2]]))).json<any>()
    expect(nested.outputs).toEqual(flat.outputs)
  })

  it('runs a graph that needs executeAsync, with a dynamic output shape', async () => {
    const res = await post('/v2/models/positives/infer', {
      inputs: [{ name: 'x', shape: [2, 3], datatype: 'FP32', data: [1, -1, 0, 0, 2, 3] }],
    })
    expect(res.status).toBe(200)
    expect((await res.json<any>()).outputs[0]).toEqual({
      name: 'indices',
      datatype: 'INT32',
      shape: [3, 2],
      data: [0, 0, 1, 1, 1, 2],
    })
  })

  describe('datatype conversion', () => {
    it.each([
      ['FP16', 'INT32', [1, 2, 3], [2]],
      ['FP64', 'INT64', [1, 2, 3], [2]],
      ['INT8', 'INT16', [1, 2, 3], [2]],
      ['UINT8', 'UINT16', [1, 2, 3], [2]],
      ['INT64', 'UINT32', [1, 2, 3], [2]],
      ['UINT64', 'INT8', [1, 2, 3], [2]],
      ['FP32', 'FP64', [1, 2, 3], [2.0]],
    ])('feeds %s to FP32 and %s to INT32 when the values fit exactly', async (fp, int, features, multiplier) => {
      const res = await post('/v2/models/pair/infer', pairInputs(features, multiplier, [fp, int]))
      expect(res.status).toBe(200)
      const body = await res.json<any>()
      expect(body.outputs[1].data).toEqual([3])
      // Outputs come in the datatype the model produces, whatever was sent.
      expect(body.outputs.map((o: any) => o.datatype)).toEqual(['FP32', 'INT32'])
    })

    it.each([
      [
        'an INT8 value out of range',
        ['FP32', 'INT8'],
        [1, 2, 3],
        [200],
        /input 'multiplier' data\[0\]\[0\]: 200 is out of INT8 range \[-128, 127\]/,
      ],
      [
        'a UINT8 negative',
        ['UINT8', 'INT32'],
        [1, -2, 3],
        [2],
        /input 'features' data\[0\]\[1\]: -2 is out of UINT8 range/,
      ],
      ['an INT64 beyond int32', ['FP32', 'INT64'], [1, 2, 3], [2 ** 40], /does not fit the model's INT32/],
      [
        'an integer FP32 cannot hold exactly',
        ['INT32', 'INT32'],
        [16777217, 2, 3],
        [2],
        /16777217 cannot be held exactly in the model's FP32/,
      ],
      [
        'a fraction for an integer input',
        ['FP32', 'FP64'],
        [1, 2, 3],
        [2.5],
        /2\.5 is not an integer the model's INT32 can hold/,
      ],
      ['an FP16 value out of range', ['FP16', 'INT32'], [1, 70000, 3], [2], /70000 is out of FP16 range/],
      [
        'an FP64 value out of FP32 range',
        ['FP64', 'INT32'],
        [1, 1e300, 3],
        [2],
        /1e\+300 is out of the model's FP32 range/,
      ],
      [
        'a fraction declared INT32',
        ['INT32', 'INT32'],
        [1.5, 2, 3],
        [2],
        /expected an integer \(INT32\), got number 1\.5/,
      ],
      [
        'BOOL for a number',
        ['BOOL', 'INT32'],
        [true, false, true],
        [2],
        /datatype BOOL cannot be fed to an input of FP32/,
      ],
      [
        'BYTES for a number',
        ['BYTES', 'INT32'],
        ['a', 'b', 'c'],
        [2],
        /has no image preprocessing \(inputs\.\w+\.image in its config\.json\), so it takes float32 numbers, not BYTES/,
      ],
      [
        'a string in FP32 data',
        ['FP32', 'INT32'],
        [1, 'NaN', 3],
        [2],
        /expected a number \(FP32\), got the string "NaN"/,
      ],
    ])('refuses %s', async (_name, datatypes, features, multiplier, message) => {
      const res = await post('/v2/models/pair/infer', pairInputs(features, multiplier, datatypes))
      expect(res.status).toBe(400)
      expect((await res.json<any>()).error).toMatch(message)
    })
  })

  describe('errors', () => {
    const one = (input: Record<string, unknown>) => ({
      inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2], ...input }],
    })
    it.each([
      ['an unknown model', '/v2/models/nope/infer', one({}), 404, /model 'nope' not found/],
      ['an unknown version', '/v2/models/iris/versions/9/infer', one({}), 404, /no version 9/],
      ['no inputs', '/v2/models/iris/infer', { inputs: [] }, 400, /'inputs': inputs is empty/],
      ['inputs missing', '/v2/models/iris/infer', { id: 'x' }, 400, /'inputs'/],
      [
        'an unknown datatype',
        '/v2/models/iris/infer',
        one({ datatype: 'FLOAT' }),
        400,
        /'inputs.0.datatype': datatype must be one of BOOL, UINT8/,
      ],
      ['a negative dimension', '/v2/models/iris/infer', one({ shape: [-1, 4] }), 400, /'inputs.0.shape/],
      [
        'no data',
        '/v2/models/iris/infer',
        { inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32' }] },
        400,
        /data is required/,
      ],
      ['an id that is not a string', '/v2/models/iris/infer', { id: 7, ...one({}) }, 400, /'id'/],
      [
        'an unknown input',
        '/v2/models/iris/infer',
        one({ name: 'petals' }),
        400,
        /unknown input 'petals'; the model's inputs are 'features'/,
      ],
      [
        'a missing input',
        '/v2/models/pair/infer',
        { inputs: [pairInputs().inputs[0]] },
        400,
        /missing input 'multiplier'/,
      ],
      [
        'an input given twice',
        '/v2/models/pair/infer',
        { inputs: [...pairInputs().inputs, pairInputs().inputs[1]] },
        400,
        /input 'multiplier' is given twice/,
      ],
      [
        'an unknown output',
        '/v2/models/pair/infer',
        { ...pairInputs(), outputs: [{ name: 'logits' }] },
        400,
        /unknown output 'logits'; the model's outputs are 'scores', 'shifted'/,
      ],
      [
        'an output asked for twice',
        '/v2/models/pair/infer',
        { ...pairInputs(), outputs: [{ name: 'scores' }, { name: 'shifted' }, { name: 'scores' }] },
        400,
        /'outputs\.2\.name': output 'scores' is asked for twice/,
      ],
      [
        'no rows',
        '/v2/models/iris/infer',
        one({ shape: [0, 4], data: [] }),
        400,
        /^input 'features' data: shape \[0, 4\] has no rows; a request needs at least one row$/,
      ],
      [
        'data shorter than the shape',
        '/v2/models/iris/infer',
        one({ data: [1, 2, 3] }),
        400,
        /shape \[1, 4\] holds 4 elements but data has 3/,
      ],
      [
        'nested data unlike the shape',
        '/v2/models/iris/infer',
        one({ shape: [2, 2], data: [[1, 2, 3, 4]] }),
        400,
        /expected rank 2.*|nested data has shape \[1, 4\] but shape says \[2, 2\]/,
      ],
      [
        "a shape unlike the model's",
        '/v2/models/iris/infer',
        one({ shape: [4, 1] }),
        400,
        /input 'features' data: dimension 1 must be 4 \(shape \[-1, 4\]\), got 1 \(shape \[4, 1\]\)/,
      ],
      ['ragged nested data', '/v2/models/iris/infer', one({ shape: [2, 2], data: [[1, 2], [3]] }), 400, /ragged/],
      ['malformed JSON', '/v2/models/iris/infer', '{"inputs": [', 400, /malformed JSON/],
    ])('%s', async (_name, path, body, status, message) => {
      const res = await post(path, body)
      expect(res.status).toBe(status)
      expect((await res.json<any>()).error).toMatch(message)
    })

    it.each([
      ['GET', '/v2/models/iris/infer', 'POST'],
      ['POST', '/v2/models/iris', 'GET'],
      ['DELETE', '/v2/models/iris/ready', 'GET'],
      ['POST', '/v2', 'GET'],
    ])('%s %s is 405 with Allow: %s', expectNotAllowed)
  })
})

describe("a model's config.json", () => {
  const batch = (n: number, k = 2) => ({
    inputs: [
      { name: 'features', shape: [n, 3], datatype: 'FP32', data: Array(n * 3).fill(1) },
      { name: 'multiplier', shape: [n, 1], datatype: 'INT32', data: Array(n).fill(k) },
    ],
  })

  it('shows its description and returns its default outputs', async () => {
    const meta = await (await call('/v2/models/pair-configured')).json<any>()
    expect(meta.parameters.description).toMatch(/batches of 2 at most/)
    const body = await (await post('/v2/models/pair-configured/infer', batch(2))).json<any>()
    expect(body.outputs.map((o: any) => o.name)).toEqual(['scores'])
    const v1 = await (
      await post('/v1/models/pair-configured:predict', { instances: [{ features: [1, 1, 1], multiplier: [2] }] })
    ).json<any>()
    expect(v1.predictions).toHaveLength(1)
    expect(v1.predictions[0]).toHaveLength(2) // the bare scores row: one output, so no object
  })

  it('still returns any output asked for', async () => {
    const body = await (
      await post('/v2/models/pair-configured/infer', { ...batch(1), outputs: [{ name: 'shifted' }] })
    ).json<any>()
    expect(body.outputs.map((o: any) => o.name)).toEqual(['shifted'])
  })

  it('narrows the batch limit', async () => {
    const res = await post('/v2/models/pair-configured/infer', batch(3))
    expect(res.status).toBe(400)
    expect((await res.json<any>()).error).toMatch(
      /batch of 3 exceeds the limit of 2 \(max_batch_size in pair-configured\/config\.json\)/,
    )
    const v1 = await post('/v1/models/pair-configured:predict', {
      instances: Array(3).fill({ features: [1, 1, 1], multiplier: [2] }),
    })
    expect((await v1.json<any>()).error).toMatch(
      /'instances' has 3 rows, more than the limit of 2 \(max_batch_size in pair-configured\/config\.json\)/,
    )
  })

  it('refuses values outside the input limits', async () => {
    const res = await post('/v2/models/pair-configured/infer', batch(1, 9))
    expect(res.status).toBe(400)
    expect((await res.json<any>()).error).toMatch(
      /input 'multiplier' data\[0\]\[0\]: 9 is above the maximum 5 \(input_limits in pair-configured\/config\.json\)/,
    )
  })

  it('a default output the model lacks is a config fault: 503 with Retry-After, as every config.json fault', async () => {
    const res = await post('/v2/models/pair-badconfig/infer', batch(1))
    expect(res.status).toBe(503)
    expect(res.headers.get('Retry-After')).toBe('60')
    expect((await res.json<any>()).error).toMatch(
      /pair-badconfig\/config\.json: default_outputs names 'logits', which the model does not have/,
    )
  })

  it('an unknown field makes the model unavailable, with the reason', async () => {
    const res = await post('/v2/models/pair-typo/infer', batch(1))
    expect(res.status).toBe(503)
    expect((await res.json<any>()).error).toMatch(/pair-typo\/config\.json is invalid: .*max_batch/)
  })
})
