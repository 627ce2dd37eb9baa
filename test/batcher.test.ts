// The batcher on its own, around a real tf.js model: what merges, when a batch runs, how rows come
// back, and every way it falls back to running a request alone.
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { batchingOf, withBatching } from '../src/runtime/batcher'
import type { Servable } from '../src/runtime/servable'
import { buildServable } from '../src/runtime/servable'
import { tf } from '../src/runtime/tf'
import { tinyModelArtifacts } from './support/helpers'
import { isolate } from '../src/isolate'

// Models here are built directly, not through the isolate: start its backend as a load would.
beforeAll(() => isolate().backend.ensure())

const artifacts = await tinyModelArtifacts()

/** The tiny model ([-1, 4] → [-1, 3]), recording the rows of every run it is given. */
async function recorded(
  override?: (inputs: Record<string, tf.Tensor>, inner: Servable) => Promise<Record<string, tf.Tensor>>,
) {
  const { servable } = await buildServable(artifacts)
  const runs: number[] = []
  let disposed = 0
  const model: Servable = {
    ...servable,
    run: (inputs) => {
      runs.push(Object.values(inputs)[0]!.shape[0]!)
      return override ? override(inputs, servable) : servable.run(inputs)
    },
    dispose: () => (disposed++, servable.dispose()),
  }
  return { inner: servable, model, runs, disposals: () => disposed }
}

/** `rows` rows of 4 features, distinct for each `seed`. */
const rowsOf = (seed: number, rows: number) =>
  Array.from({ length: rows }, (_, r) => [seed, r, seed * 0.5 - r, 1 / (seed + r + 1)])

/** Runs `servable` on `rows` and returns its output as arrays, disposing every tensor it made. */
async function predict(servable: Servable, rows: number[][]): Promise<number[][]> {
  const x = tf.tensor2d(rows)
  try {
    const outputs = await servable.run({ [servable.signature.inputs[0]!.name]: x })
    const values = Object.values(outputs)[0]!.arraySync() as number[][]
    tf.dispose(outputs)
    return values
  } finally {
    x.dispose()
  }
}

describe('withBatching', () => {
  let before: number
  let disposeAll: (() => void)[]

  beforeEach(() => {
    before = tf.memory().numTensors
    disposeAll = []
  })
  afterEach(() => {
    for (const dispose of disposeAll) dispose()
    vi.restoreAllMocks()
  })

  async function setup(options = { maxBatchSize: 8, maxQueueDelayMs: 5 }, override?: Parameters<typeof recorded>[0]) {
    const r = await recorded(override)
    const batched = withBatching(r.model, { ...options, model: 'tiny/1' })
    disposeAll.push(() => batched.dispose())
    before = tf.memory().numTensors
    return { ...r, batched }
  }

  it('merges concurrent requests into one run, and each gets exactly the rows the model gives it alone', async () => {
    const { inner, batched, runs } = await setup()
    expect(batched.signature).toBe(inner.signature)
    const requests = [1, 3, 2, 1].map((n, i) => rowsOf(i + 1, n))
    const alone = await Promise.all(requests.map((rows) => predict(inner, rows)))
    const together = await Promise.all(requests.map((rows) => predict(batched, rows)))
    expect(together).toEqual(alone)
    expect(runs).toEqual([7])
    expect(batchingOf(batched)!.counters).toEqual({
      requests: 4,
      batches: 1,
      merged: 4,
      alone: 0,
      rerun: 0,
      maxRows: 7,
    })
    expect(tf.memory().numTensors).toBe(before)
  })

  it('runs a full batch at once, without waiting for the queue delay', async () => {
    const { batched, runs } = await setup({ maxBatchSize: 4, maxQueueDelayMs: 1000 })
    const started = Date.now()
    await Promise.all([1, 2, 3, 4].map((i) => predict(batched, rowsOf(i, 1))))
    expect(Date.now() - started).toBeLessThan(500)
    expect(runs).toEqual([4])
  })

  it('runs a lone request after the queue delay, as it is', async () => {
    const { batched, runs } = await setup({ maxBatchSize: 8, maxQueueDelayMs: 20 })
    const started = Date.now()
    await predict(batched, rowsOf(1, 2))
    expect(Date.now() - started).toBeGreaterThanOrEqual(15)
    expect(runs).toEqual([2])
    expect(batchingOf(batched)!.counters).toMatchObject({ requests: 1, batches: 0, alone: 1 })
  })

  it('closes a batch before a request that would overflow it, and runs a request bigger than a batch alone', async () => {
    const { inner, batched, runs } = await setup({ maxBatchSize: 4, maxQueueDelayMs: 5 })
    const requests = [3, 2, 6].map((n, i) => rowsOf(i, n))
    const alone = await Promise.all(requests.map((rows) => predict(inner, rows)))
    expect(await Promise.all(requests.map((rows) => predict(batched, rows)))).toEqual(alone)
    expect(runs.sort()).toEqual([2, 3, 6])
    expect(batchingOf(batched)!.counters).toMatchObject({ batches: 0, alone: 3 })
  })

  it('reruns a failed batch request by request, so only the bad request fails', async () => {
    const { inner, batched, runs } = await setup(undefined, async (inputs, model) => {
      if ((Object.values(inputs)[0]!.dataSync() as Float32Array).some((v) => v > 100))
        throw new Error('value out of range')
      return model.run(inputs)
    })
    const good = [rowsOf(1, 2), rowsOf(2, 1)]
    const results = await Promise.allSettled([
      predict(batched, good[0]!),
      predict(batched, [[999, 0, 0, 0]]),
      predict(batched, good[1]!),
    ])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect((results[1] as PromiseRejectedResult).reason.message).toBe('value out of range')
    expect(results[0]).toEqual({ status: 'fulfilled', value: await predict(inner, good[0]!) })
    expect(results[2]).toEqual({ status: 'fulfilled', value: await predict(inner, good[1]!) })
    expect(runs).toEqual([4, 2, 1, 1])
    expect(batchingOf(batched)!.counters).toMatchObject({ batches: 0, rerun: 3 })
    expect(batchingOf(batched)!.active).toBe(true)
    expect(tf.memory().numTensors).toBe(before)
  })

  it('stops batching for good, with one log line, when an output has no row per input row', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    // A model whose output sums over the batch: [1, 3] whatever the rows, so it cannot be split.
    const { model, batched, runs } = await setup(undefined, async (inputs, inner) => {
      const outputs = await inner.run(inputs)
      const summed = Object.fromEntries(Object.entries(outputs).map(([k, t]) => [k, tf.sum(t, 0, true)]))
      tf.dispose(outputs)
      return summed
    })
    const requests = [rowsOf(1, 2), rowsOf(2, 3), rowsOf(3, 1)]
    const alone = await Promise.all(requests.map((rows) => predict(model, rows)))
    runs.length = 0
    expect(await Promise.all(requests.map((rows) => predict(batched, rows)))).toEqual(alone)
    expect(runs).toEqual([6, 2, 3, 1])
    expect(batchingOf(batched)!.active).toBe(false)
    runs.length = 0
    expect(await Promise.all(requests.map((rows) => predict(batched, rows)))).toEqual(alone)
    expect(runs).toEqual([2, 3, 1])
    expect(batchingOf(batched)!.counters).toMatchObject({ batches: 0, rerun: 3, alone: 3 })
    const lines = warn.mock.calls
      .map(([line]) => JSON.parse(line as string))
      .filter((l) => l.event === 'model.batching_off')
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'warn',
        model: 'tiny/1',
        reason: expect.stringMatching(/output '.*' has shape \[1, 3\] for a merged batch of 6 rows/),
      }),
    ])
    expect(tf.memory().numTensors).toBe(before)
  })

  it('does not batch a model whose signature has a fixed batch dimension', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const { model, runs } = await recorded()
    const fixed: Servable = {
      ...model,
      signature: { ...model.signature, inputs: [{ ...model.signature.inputs[0]!, shape: [1, 4] }] },
    }
    const batched = withBatching(fixed, { maxBatchSize: 8, maxQueueDelayMs: 5, model: 'fixed/1' })
    disposeAll.push(() => batched.dispose())
    await Promise.all([predict(batched, rowsOf(1, 1)), predict(batched, rowsOf(2, 1))])
    expect(runs).toEqual([1, 1])
    expect(batchingOf(batched)!.active).toBe(false)
    expect(JSON.parse(warn.mock.calls[0]![0] as string)).toMatchObject({
      event: 'model.batching_off',
      reason: expect.stringMatching(/no dynamic batch dimension/),
    })
  })

  it('dispose() disposes the model, and rejects requests still queued with a clear error', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {})
    const { batched, runs, disposals } = await setup({ maxBatchSize: 8, maxQueueDelayMs: 1000 })
    disposeAll.pop()
    const queued = predict(batched, rowsOf(1, 1))
    batched.dispose()
    await expect(queued).rejects.toThrow('tiny/1 was disposed with 1 request(s) queued for batching')
    await expect(predict(batched, rowsOf(1, 1))).rejects.toThrow('tiny/1 was disposed')
    expect(runs).toEqual([])
    expect(disposals()).toBe(1)
    expect(error).toHaveBeenCalledTimes(1)
  })

  it("holds the merged copy of the requests' inputs in the memory budget for the length of the merged run", async () => {
    const ledger = isolate().cache.admission.ledger
    const held: number[] = []
    const { inner, batched, runs } = await setup(undefined, async (inputs, model) => {
      held.push(ledger.used('input'))
      return model.run(inputs)
    })
    const before = ledger.used('input')
    const requests = [1, 3, 2].map((n, i) => rowsOf(i + 1, n))
    const alone = await Promise.all(requests.map((rows) => predict(inner, rows)))
    expect(await Promise.all(requests.map((rows) => predict(batched, rows)))).toEqual(alone)
    expect(runs).toEqual([6])
    // 6 rows of 4 float32 features, copied once into the merged input.
    expect(held).toEqual([before + 6 * 4 * 4])
    expect(ledger.used('input')).toBe(before)
  })

  it('runs the requests one by one, each as it came, when the budget has no room for their merged copy', async () => {
    const ledger = isolate().cache.admission.ledger
    const { inner, batched, runs } = await setup()
    // The budget full but for less than the copy of 6 rows (96 bytes): a reservation of the test's own.
    const filler = { input: 'the test' }
    ledger.hold(filler, 'input', ledger.limit - ledger.used() - 95)
    try {
      const requests = [1, 3, 2].map((n, i) => rowsOf(i + 1, n))
      const alone = await Promise.all(requests.map((rows) => predict(inner, rows)))
      expect(await Promise.all(requests.map((rows) => predict(batched, rows)))).toEqual(alone)
      expect(runs).toEqual([1, 3, 2])
      expect(batchingOf(batched)!.counters).toMatchObject({ requests: 3, batches: 0, merged: 0, alone: 3, rerun: 0 })
    } finally {
      ledger.release(filler)
    }
    expect(tf.memory().numTensors).toBe(before)
  })

  it('is not a batching servable unless wrapped', async () => {
    const { model } = await recorded()
    disposeAll.push(() => model.dispose())
    expect(batchingOf(model)).toBeUndefined()
  })
})
