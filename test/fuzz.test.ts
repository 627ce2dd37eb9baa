// Property-based fuzzing of every predict/infer endpoint and path parameter: whatever a client
// sends, the answer is never a 5xx, always the protocol's JSON error with a useful message, and
// a valid request right after still gets the right prediction.
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DATATYPES } from '../src/protocols/datatypes'
import { tf } from '../src/runtime/tf'
import { call, SETOSA } from './support/helpers'

const MODELS = ['iris', 'digits', 'pair', 'pair-nosig', 'flower', 'positives', 'nope']
const RUNS = 300

/** Numbers at the edges: huge, tiny, negative zero, non-integers, and what JSON turns NaN/Infinity into. */
const edgeNumber = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(0, -0, 1e308, -1e308, 5e-324, 2 ** 31, -(2 ** 31) - 1, 2 ** 53 + 1, 16777217, 65505, 0.5),
)
const leaf = fc.oneof(
  edgeNumber,
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 8 }),
  fc.constantFrom('NaN', 'Infinity', '1e400'),
)
/** Nested arrays, mostly rectangular-ish, sometimes ragged. */
const tensorish = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('value'), { maxLength: 5 })),
})).value
const name = fc.oneof(
  fc.constantFrom('features', 'image', 'x', 'k', 'multiplier', 'sepal', 'petal', ''),
  fc.string({ maxLength: 6 }),
)

const tfServingBody = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.record({ instances: fc.array(tensorish, { maxLength: 6 }) }),
  fc.record({ instances: fc.array(fc.dictionary(name, tensorish, { maxKeys: 3 }), { maxLength: 4 }) }),
  fc.record({ inputs: fc.oneof(tensorish, fc.dictionary(name, tensorish, { maxKeys: 3 })) }),
  fc.record(
    { signature_name: fc.oneof(fc.string(), fc.integer()), instances: fc.array(tensorish, { maxLength: 3 }) },
    { requiredKeys: [] },
  ),
  fc.record({ instances: fc.constant([SETOSA]), inputs: tensorish }),
)
const v2Body = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.record(
    {
      id: fc.oneof(fc.string(), fc.integer()),
      parameters: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 1 })), fc.integer()),
      inputs: fc.array(
        fc.record(
          {
            name,
            shape: fc.oneof(fc.array(fc.integer({ min: -2, max: 6 }), { maxLength: 5 }), fc.jsonValue({ maxDepth: 1 })),
            datatype: fc.oneof(fc.constantFrom(...DATATYPES), fc.string({ maxLength: 5 })),
            data: fc.oneof(tensorish, fc.array(edgeNumber, { maxLength: 30 })),
            parameters: fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 1 })),
          },
          { requiredKeys: ['name', 'shape', 'datatype', 'data'] },
        ),
        { maxLength: 3 },
      ),
      outputs: fc.array(fc.record({ name }), { maxLength: 2 }),
    },
    { requiredKeys: ['inputs'] },
  ),
)
const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'text/plain',
  undefined,
  'application/xml',
  'multipart/form-data',
  'application/octet-stream',
  '',
)
/** Path segments with traversal, encodings, unicode and separators. */
const segment = fc.oneof(
  fc.constantFrom(...MODELS),
  fc.constantFrom(
    '..',
    '../iris',
    '%2e%2e',
    '%2F',
    '_index.json',
    'iris%00',
    'ïris',
    '🙂',
    ' ',
    'iris/../digits',
    'iris:predict:predict',
    'constructor',
    '__proto__',
    'hasOwnProperty',
  ),
  fc.string({ maxLength: 10 }),
)
const version = fc.oneof(
  fc.constantFrom('1', '2', '0', '-1', '01', '1.0', '9999999999999999999', 'latest'),
  fc.string({ maxLength: 4 }),
)

/** Statuses seen, reported once at the end: what the fuzzing actually exercised. */
const seen: Record<number, number> = {}

async function expectWellFormed(res: Response, what: string) {
  seen[res.status] = (seen[res.status] ?? 0) + 1
  if (res.status >= 500) throw new Error(`${what} → ${res.status} ${await res.text()}`)
  expect(res.headers.get('content-type'), what).toMatch(/^application\/json/)
  const body = await res.json<any>()
  if (res.status >= 400) {
    expect(typeof body.error, what).toBe('string')
    expect(body.error.length, what).toBeGreaterThan(5)
    expect(body.error, what).not.toMatch(/\bat \S+\.(ts|js):\d+|node_modules|\/work\//) // no stack traces or paths
  }
}

async function stillRight() {
  const res = await call('/v1/models/iris:predict', { method: 'POST', body: JSON.stringify({ instances: [SETOSA] }) })
  expect(res.status).toBe(200)
  const p = (await res.json<any>()).predictions[0] as number[]
  expect(p.indexOf(Math.max(...p))).toBe(0)
}

const encode = (s: string) => encodeURIComponent(s).replace(/%25/g, '%')

describe('fuzzing', () => {
  afterAll(() =>
    console.log(`fuzz: ${Object.values(seen).reduce((a, b) => a + b, 0)} requests, statuses ${JSON.stringify(seen)}`),
  )
  beforeAll(async () => {
    // Warm the models once, so the properties exercise validation rather than loads.
    for (const m of MODELS.slice(0, -1)) await call(`/v2/models/${m}/ready`)
  })

  it('TF Serving :predict never answers 5xx, whatever the body', async () => {
    const before = tf.memory().numTensors
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...MODELS), tfServingBody, contentType, async (model, body, type) => {
        const headers: Record<string, string> = type === undefined ? {} : { 'content-type': type }
        const res = await call(`/v1/models/${model}:predict`, { method: 'POST', body: JSON.stringify(body), headers })
        await expectWellFormed(res, `POST ${model}:predict ${JSON.stringify(body).slice(0, 200)}`)
      }),
      { numRuns: RUNS },
    )
    await stillRight()
    expect(tf.memory().numTensors).toBe(before)
  })

  it('v2 /infer never answers 5xx, whatever the body', async () => {
    const before = tf.memory().numTensors
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...MODELS), v2Body, async (model, body) => {
        const res = await call(`/v2/models/${model}/infer`, {
          method: 'POST',
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json' },
        })
        await expectWellFormed(res, `POST ${model}/infer ${JSON.stringify(body).slice(0, 200)}`)
      }),
      { numRuns: RUNS },
    )
    await stillRight()
    expect(tf.memory().numTensors).toBe(before)
  })

  it('every path shape with any model name, version and method answers a JSON 4xx or 2xx', async () => {
    const paths = (m: string, v: string) => [
      `/v1/models/${m}`,
      `/v1/models/${m}:predict`,
      `/v1/models/${m}/metadata`,
      `/v1/models/${m}/versions/${v}`,
      `/v1/models/${m}/versions/${v}:predict`,
      `/v1/models/${m}/versions/${v}/metadata`,
      `/v2/models/${m}`,
      `/v2/models/${m}/ready`,
      `/v2/models/${m}/infer`,
      `/v2/models/${m}/versions/${v}/infer`,
    ]
    await fc.assert(
      fc.asyncProperty(
        segment,
        version,
        fc.nat(9),
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH'),
        async (m, v, i, method) => {
          const path = paths(encode(m), encode(v))[i]!
          const init: RequestInit =
            method === 'GET' || method === 'DELETE'
              ? { method }
              : { method, body: JSON.stringify({ instances: [SETOSA] }) }
          const res = await call(path, init)
          await expectWellFormed(res, `${method} ${path}`)
          if (m !== 'iris' && !MODELS.includes(m)) expect(res.status, `${method} ${path}`).not.toBe(200)
        },
      ),
      { numRuns: RUNS },
    )
    await stillRight()
  })

  it('truncated bodies and deep nesting are 400s', async () => {
    const whole = JSON.stringify({ instances: [SETOSA, SETOSA] })
    for (let cut = 0; cut < whole.length; cut++) {
      const res = await call('/v1/models/iris:predict', { method: 'POST', body: whole.slice(0, cut) })
      expect(res.status, whole.slice(0, cut)).toBe(400)
    }
    for (const [levels, message] of [
      [40, /instances: nested deeper than 32 levels/],
      [5000, /request body nests deeper than 64 levels/],
    ] as const) {
      const deep = '['.repeat(levels) + '1' + ']'.repeat(levels)
      const res = await call('/v1/models/iris:predict', { method: 'POST', body: `{"instances": ${deep}}` })
      expect(res.status).toBe(400)
      expect((await res.json<any>()).error).toMatch(message)
    }
    await stillRight()
  })
})
