// Adaptive batching through the Worker: concurrent requests to a model with `batching` in its
// config.json are merged, and every response is exactly what the model gives that request alone.
import { env } from 'cloudflare:workers'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { batchingOf } from '../src/runtime/batcher'
import type { BatchCounters } from '../src/runtime/batcher'
import { ModelConfig } from '../src/repository/repository'
import { tf } from '../src/runtime/tf'
import { post } from './support/helpers'
import { isolate, resetIsolate } from '../src/isolate'

beforeEach(() => {
  resetIsolate()
})
afterEach(() => vi.restoreAllMocks())

const CONCURRENT = 32
/** max_batch_size of the *-batched fixtures (scripts/dev/build-fixtures.mjs). */
const MAX_BATCH = 8

/** The batcher's counters of a loaded model (a cache hit, so it loads nothing). */
async function countersOf(model: string): Promise<BatchCounters & { active: boolean }> {
  const { lease } = await isolate().lease(env, model)
  try {
    const status = batchingOf(lease.model)
    if (!status) throw new Error(`${model} does not batch`)
    return { ...status.counters, active: status.active }
  } finally {
    lease.release()
  }
}

/** Request `i` of the pair graph: 1–3 rows of features and multipliers, distinct per request. */
function pairRows(i: number, rows = (i % 3) + 1) {
  return Array.from({ length: rows }, (_, r) => ({
    features: [i, r - 1.5, i * 0.25 + r],
    multiplier: [((i + r) % 5) - 2],
  }))
}

async function json(res: Response) {
  expect(res.status).toBe(200)
  return res.json<any>()
}

describe('pair-batched (TF Serving REST)', () => {
  it(`${CONCURRENT} concurrent requests of 1–3 rows each get exactly their own rows, in fewer runs`, async () => {
    const requests = Array.from({ length: CONCURRENT }, (_, i) => pairRows(i))
    // Load both models first, so that what is measured is serving, not loading.
    await json(await post('/v1/models/pair:predict', { instances: requests[0] }))
    await json(await post('/v1/models/pair-batched:predict', { instances: requests[0] }))
    const before = tf.memory().numTensors
    const expected = []
    for (const instances of requests) expected.push(await json(await post('/v1/models/pair:predict', { instances })))

    const answers = await Promise.all(
      requests.map(async (instances) => json(await post('/v1/models/pair-batched:predict', { instances }))),
    )
    expect(answers).toEqual(expected)
    const counters = await countersOf('pair-batched')
    expect(counters.requests).toBe(CONCURRENT + 1) // and the first request, which loaded it
    expect(counters.batches).toBeGreaterThan(0)
    expect(counters.batches + counters.alone).toBeLessThan(CONCURRENT)
    expect(counters.maxRows).toBeLessThanOrEqual(MAX_BATCH)
    expect(tf.memory().numTensors).toBe(before)
  })

  it('runs a request with more rows than max_batch_size alone, beside merged ones', async () => {
    const big = pairRows(100, MAX_BATCH + 4)
    const small = [pairRows(1), pairRows(2)]
    const expected = await Promise.all(
      [big, ...small].map(async (instances) => json(await post('/v1/models/pair:predict', { instances }))),
    )
    const answers = await Promise.all(
      [big, ...small].map(async (instances) => json(await post('/v1/models/pair-batched:predict', { instances }))),
    )
    expect(answers).toEqual(expected)
    expect(answers[0].predictions).toHaveLength(MAX_BATCH + 4)
    expect(await countersOf('pair-batched')).toMatchObject({ batches: 1, merged: 2, alone: 1 })
  })

  it('merges columnar requests too', async () => {
    const requests = Array.from({ length: 6 }, (_, i) => {
      const rows = pairRows(i)
      return { inputs: { features: rows.map((r) => r.features), multiplier: rows.map((r) => r.multiplier) } }
    })
    const expected = await Promise.all(requests.map(async (body) => json(await post('/v1/models/pair:predict', body))))
    const answers = await Promise.all(
      requests.map(async (body) => json(await post('/v1/models/pair-batched:predict', body))),
    )
    expect(answers).toEqual(expected)
    expect((await countersOf('pair-batched')).merged).toBeGreaterThan(0)
  })
})

describe('pair-batched (Open Inference Protocol)', () => {
  it(`${CONCURRENT} concurrent infer requests get exactly their own rows`, async () => {
    const requests = Array.from({ length: CONCURRENT }, (_, i) => {
      const rows = pairRows(i)
      return {
        id: `req-${i}`,
        inputs: [
          { name: 'features', shape: [rows.length, 3], datatype: 'FP32', data: rows.flatMap((r) => r.features) },
          { name: 'multiplier', shape: [rows.length, 1], datatype: 'INT32', data: rows.flatMap((r) => r.multiplier) },
        ],
      }
    })
    const expected = await Promise.all(requests.map(async (body) => json(await post('/v2/models/pair/infer', body))))
    const answers = await Promise.all(
      requests.map(async (body) => json(await post('/v2/models/pair-batched/infer', body))),
    )
    expect(answers.map(({ model_name, ...rest }) => (expect(model_name).toBe('pair-batched'), rest))).toEqual(
      expected.map(({ model_name, ...rest }) => rest),
    )
    const counters = await countersOf('pair-batched')
    expect(counters.batches).toBeGreaterThan(0)
    expect(counters.batches + counters.alone).toBeLessThan(CONCURRENT)
  })
})

describe('a dynamic non-batch dimension (rowsum-batched: x [-1, -1] → each row’s sum)', () => {
  it('merges only requests of the same width; each gets its own sums', async () => {
    const widths = [2, 3, 5]
    const requests = Array.from({ length: 24 }, (_, i) => {
      const width = widths[i % widths.length]!
      return Array.from({ length: (i % 3) + 1 }, (_, r) => Array.from({ length: width }, (_, c) => i * 10 + r * 3 + c))
    })
    const answers = await Promise.all(
      requests.map(async (instances) => json(await post('/v1/models/rowsum-batched:predict', { instances }))),
    )
    answers.forEach((answer, i) =>
      expect(answer.predictions).toEqual(requests[i]!.map((row) => row.reduce((a, b) => a + b, 0))),
    )
    const counters = await countersOf('rowsum-batched')
    expect(counters.batches).toBeGreaterThan(0)
    expect(counters.batches + counters.alone).toBeLessThan(requests.length)
    expect(counters.active).toBe(true)
  })
})

describe('an output that is not per row (colsum-batched: x [-1, 3] → the sum over rows, [1, 3])', () => {
  it('cannot be split: the requests rerun alone, each gets its own answer, and the model stops batching', async () => {
    const warn = vi.spyOn(console, 'warn')
    const requests = Array.from({ length: 8 }, (_, i) => Array.from({ length: (i % 3) + 1 }, (_, r) => [i, r, i + r]))
    const columnSums = (rows: number[][]) => [rows.reduce((sum, row) => sum.map((s, c) => s + row[c]!), [0, 0, 0])]
    const answers = await Promise.all(
      requests.map(async (instances) => json(await post('/v1/models/colsum-batched:predict', { instances }))),
    )
    answers.forEach((answer, i) => expect(answer.predictions).toEqual(columnSums(requests[i]!)))
    const counters = await countersOf('colsum-batched')
    expect(counters).toMatchObject({ active: false, batches: 0 })
    expect(counters.rerun).toBeGreaterThan(0)
    const off = warn.mock.calls
      .map(([line]) => String(line))
      .filter((line) => line.includes('"event":"model.batching_off"'))
    expect(off).toHaveLength(1)
    expect(JSON.parse(off[0]!)).toMatchObject({
      model: 'colsum-batched/1',
      reason: expect.stringMatching(/cannot be split/),
    })

    // From now on each request runs alone, and still gets its own answer.
    const again = await Promise.all(
      requests.map(async (instances) => json(await post('/v1/models/colsum-batched:predict', { instances }))),
    )
    expect(again).toEqual(answers)
  })
})

describe('digits-batched (a copy of the bundled digits, batched)', () => {
  it('answers concurrent requests as the unbatched digits does, within 1e-6', async () => {
    const image = (seed: number) =>
      Array.from({ length: 28 }, (_, y) =>
        Array.from({ length: 28 }, (_, x) => [((seed * 31 + y * 7 + x * 13) % 17) / 16]),
      )
    const requests = Array.from({ length: 16 }, (_, i) =>
      Array.from({ length: (i % 3) + 1 }, (_, r) => image(i * 3 + r)),
    )
    const expected = await Promise.all(
      requests.map(async (instances) => json(await post('/v1/models/digits:predict', { instances }))),
    )
    const answers = await Promise.all(
      requests.map(async (instances) => json(await post('/v1/models/digits-batched:predict', { instances }))),
    )
    answers.forEach((answer, i) => {
      const want = (expected[i].predictions as number[][]).flat()
      const got = (answer.predictions as number[][]).flat()
      expect(got).toHaveLength(want.length)
      got.forEach((v, j) => expect(Math.abs(v - want[j]!)).toBeLessThanOrEqual(1e-6))
    })
    const counters = await countersOf('digits-batched')
    expect(counters.batches).toBeGreaterThan(0)
    expect(counters.batches + counters.alone).toBeLessThan(requests.length)
  })
})

describe('models without batching', () => {
  it('are not wrapped', async () => {
    await json(await post('/v1/models/pair:predict', { instances: pairRows(0) }))
    const { lease } = await isolate().lease(env, 'pair')
    expect(batchingOf(lease.model)).toBeUndefined()
    lease.release()
  })
})

describe('config.json batching', () => {
  it('takes max_batch_size ≥ 1 and max_queue_delay_ms in [0, 1000], and refuses anything else', () => {
    const ok = (batching: unknown) => ModelConfig.safeParse({ batching }).success
    expect(ok({ max_batch_size: 1, max_queue_delay_ms: 0 })).toBe(true)
    expect(ok({ max_batch_size: 64, max_queue_delay_ms: 2.5 })).toBe(true)
    expect(ok({ max_batch_size: 0, max_queue_delay_ms: 5 })).toBe(false)
    expect(ok({ max_batch_size: 1.5, max_queue_delay_ms: 5 })).toBe(false)
    expect(ok({ max_batch_size: 8, max_queue_delay_ms: 1001 })).toBe(false)
    expect(ok({ max_batch_size: 8 })).toBe(false)
    expect(ok({ max_batch_size: 8, batch_timeout_micros: 5000 })).toBe(false)
  })
})
