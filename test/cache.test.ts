import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ModelCache } from '../src/cache/model-cache'
import type { LoadResult } from '../src/cache/model-cache'
import { buildServable } from '../src/runtime/servable'
import { tf } from '../src/runtime/tf'
import { ModelUnavailableError } from '../src/core/errors'
import { fakeClock, tinyModelArtifacts } from './support/helpers'
import { isolate } from '../src/isolate'
import { memoryBytes } from '../src/runtime/footprint'

// Models here are built directly, not through the isolate: start its backend as a load would.
beforeAll(() => isolate().backend.ensure())

const artifacts = await tinyModelArtifacts()
/** Stored weight bytes: what the repository index says before a load. */
const WEIGHT_BYTES = (artifacts.weightData as ArrayBuffer).byteLength
/** What one of these models costs, measured (weights, kernel state, one row): the unit of the budgets here. */
const MODEL_BYTES = await (async () => {
  await isolate().backend.ensure()
  const { servable } = await buildServable(artifacts)
  servable.dispose()
  return memoryBytes(servable.footprint)
})()

/** A real loader that counts its builds and can be told to fail. */
function loader() {
  const state = { builds: 0, failuresLeft: 0, disposed: 0 }
  const load = async (): Promise<LoadResult> => {
    state.builds++
    await new Promise((r) => setTimeout(r, 5)) // a load takes time, so concurrent requests overlap it
    if (state.failuresLeft > 0) {
      state.failuresLeft--
      throw new Error('shard fetch failed')
    }
    const { servable, timings } = await buildServable(artifacts)
    const dispose = servable.dispose.bind(servable)
    return { servable: { ...servable, dispose: () => (state.disposed++, dispose()) }, timings }
  }
  return { state, load }
}

const x = () => tf.tensor2d([[5.1, 3.5, 1.4, 0.2]])

describe('ModelCache', () => {
  let clock: ReturnType<typeof fakeClock>
  let cache: ModelCache
  let before: number

  beforeEach(() => {
    clock = fakeClock()
    cache = new ModelCache({ budgetBytes: 10 * MODEL_BYTES, backoffBaseMs: 1000, backoffMaxMs: 4000, now: clock.now })
    before = tf.memory().numTensors
  })
  afterEach(() => cache.reset())
  /** The keys of the models the cache holds, sorted. */
  const keys = () =>
    cache
      .list()
      .map((r) => r.key)
      .sort()
  /** One request for `key` that holds its lease for 1 ms, with `load` on a miss; returns whether it hit. */
  const use = async (key: string, load: ReturnType<typeof loader>['load']) => {
    const lease = await cache.acquire(key, WEIGHT_BYTES, load)
    clock.advance(1)
    lease.release()
    return lease.outcome
  }

  it('builds once for 50 concurrent first requests; the rest join the load', async () => {
    const { state, load } = loader()
    const leases = await Promise.all(Array.from({ length: 50 }, () => cache.acquire('m/1', WEIGHT_BYTES, load)))
    expect(state.builds).toBe(1)
    expect(leases.filter((l) => l.outcome === 'miss')).toHaveLength(1)
    expect(leases.filter((l) => l.outcome === 'joined')).toHaveLength(49)
    expect(new Set(leases.map((l) => l.model)).size).toBe(1)
    expect(cache.counters).toMatchObject({ misses: 1, joins: 49, hits: 0, loads: 1 })
    leases.forEach((l) => l.release())

    const again = await cache.acquire('m/1', WEIGHT_BYTES, load)
    expect(again.outcome).toBe('hit')
    expect(state.builds).toBe(1)
    again.release()
  })

  it('preloads without a lease: the first acquire takes the load as its miss, the rest join, one build', async () => {
    const { state, load } = loader()
    const preloaded = cache.preload('m/1', WEIGHT_BYTES, load)
    expect(cache.status('m/1')).toEqual({ state: 'LOADING' })
    const leases = await Promise.all([1, 2, 3].map(() => cache.acquire('m/1', WEIGHT_BYTES, load)))
    await preloaded
    expect(leases.map((l) => l.outcome).sort()).toEqual(['joined', 'joined', 'miss'])
    expect(cache.counters).toMatchObject({ misses: 1, joins: 2, hits: 0, loads: 1 })
    leases.forEach((l) => l.release())
    // Loaded already: a preload does nothing, and the next acquire is a hit.
    await cache.preload('m/1', WEIGHT_BYTES, load)
    const again = await cache.acquire('m/1', WEIGHT_BYTES, load)
    expect(again.outcome).toBe('hit')
    expect(state.builds).toBe(1)
    again.release()

    // A preloaded model nobody asked for is resident and idle: counted, and evictable like any other.
    await cache.preload('m/2', WEIGHT_BYTES, load)
    expect(cache.list().find((r) => r.key === 'm/2')).toMatchObject({ state: 'AVAILABLE', leases: 0 })
    expect(cache.counters).toMatchObject({ misses: 1, loads: 2 })
  })

  it('a failed preload never rejects; it backs off, and the request that asks meets the failure', async () => {
    const { state, load } = loader()
    state.failuresLeft = 1
    await cache.preload('m/1', WEIGHT_BYTES, load)
    expect(cache.status('m/1')).toMatchObject({ state: 'FAILED', message: expect.stringContaining('shard fetch') })
    await cache.preload('m/1', WEIGHT_BYTES, load)
    await expect(cache.acquire('m/1', WEIGHT_BYTES, load)).rejects.toBeInstanceOf(ModelUnavailableError)
    expect(state.builds).toBe(1) // backing off: neither the second preload nor the acquire loaded again
  })

  it('does not cache a failure: 503 with Retry-After, no reload during backoff, recovery after it', async () => {
    const { state, load } = loader()
    state.failuresLeft = 1
    const first = await Promise.allSettled([
      cache.acquire('m/1', WEIGHT_BYTES, load),
      cache.acquire('m/1', WEIGHT_BYTES, load),
    ])
    expect(state.builds).toBe(1)
    for (const result of first) {
      expect(result.status).toBe('rejected')
      const error = (result as PromiseRejectedResult).reason
      expect(error).toBeInstanceOf(ModelUnavailableError)
      expect(error.status).toBe(503)
      expect(error.headers['Retry-After']).toBe('1')
      expect(error.message).toContain('shard fetch failed')
    }

    clock.advance(500)
    await expect(cache.acquire('m/1', WEIGHT_BYTES, load)).rejects.toBeInstanceOf(ModelUnavailableError)
    expect(state.builds).toBe(1) // still backing off: no load storm

    clock.advance(600)
    const lease = await cache.acquire('m/1', WEIGHT_BYTES, load)
    expect(lease.outcome).toBe('miss')
    expect(state.builds).toBe(2)
    expect(cache.counters.loadFailures).toBe(1)
    expect(cache.status('m/1')).toEqual({ state: 'AVAILABLE' })
    lease.release()
  })

  it('doubles the backoff per consecutive failure, up to the bound', async () => {
    const { state, load } = loader()
    state.failuresLeft = 4
    const retryAfters: string[] = []
    for (let i = 0; i < 4; i++) {
      const error = await cache.acquire('m/1', WEIGHT_BYTES, load).catch((e: ModelUnavailableError) => e)
      retryAfters.push((error as ModelUnavailableError).headers['Retry-After']!)
      clock.advance(10_000)
    }
    expect(retryAfters).toEqual(['1', '2', '4', '4'])
  })

  it('a lease blocks disposal: a dropped model serves its in-flight request, then is freed', async () => {
    const { state, load } = loader()
    const lease = await cache.acquire('m/1', WEIGHT_BYTES, load)
    expect(cache.drop('m/1', 'test')).toBe(true)
    expect(state.disposed).toBe(0)
    expect(cache.list()).toEqual([expect.objectContaining({ key: 'm/1', state: 'RETIRED', leases: 1 })])

    const input = x()
    const out = await lease.model.run({ [lease.model.signature.inputs[0]!.name]: input })
    expect(Object.values(out)[0]!.shape).toEqual([1, 3])
    tf.dispose([input, out])

    lease.release()
    expect(state.disposed).toBe(1)
    expect(tf.memory().numTensors).toBe(before)

    // The next request loads it afresh.
    const next = await cache.acquire('m/1', WEIGHT_BYTES, load)
    expect(next.outcome).toBe('miss')
    expect(state.builds).toBe(2)
    next.release()
  })

  it('drop returns tf.memory().numTensors to its pre-load count', async () => {
    const { load } = loader()
    const lease = await cache.acquire('m/1', WEIGHT_BYTES, load)
    lease.release()
    expect(tf.memory().numTensors).toBeGreaterThan(before)
    cache.drop('m/1', 'test')
    expect(tf.memory().numTensors).toBe(before)
    expect(cache.residentBytes()).toBe(0)
  })

  it('evicts idle models least-recently-used first to stay within the byte budget', async () => {
    cache = new ModelCache({ budgetBytes: 2.5 * MODEL_BYTES, backoffBaseMs: 1000, backoffMaxMs: 4000, now: clock.now })
    const { load } = loader()
    await use('a/1', load)
    await use('b/1', load)
    await use('a/1', load) // a is now more recently used than b
    expect(await use('c/1', load)).toBe('miss')
    expect(keys()).toEqual(['a/1', 'c/1'])
    expect(cache.counters.evictions).toBe(1)
    expect(cache.residentBytes()).toBeLessThanOrEqual(2.5 * MODEL_BYTES)
  })

  it('holds at most maxModels models, evicting the least recently used idle one', async () => {
    cache = new ModelCache({
      budgetBytes: 100 * MODEL_BYTES,
      maxModels: 2,
      backoffBaseMs: 1000,
      backoffMaxMs: 4000,
      now: clock.now,
    })
    const { load } = loader()
    for (const key of ['a/1', 'b/1', 'a/1', 'c/1']) await use(key, load)
    expect(keys()).toEqual(['a/1', 'c/1'])
    expect(cache.counters.evictions).toBe(1)
  })

  it('never evicts a leased model: a load that does not fit waits for its lease to end', async () => {
    cache = new ModelCache({ budgetBytes: 1.5 * MODEL_BYTES, backoffBaseMs: 1000, backoffMaxMs: 4000, now: clock.now })
    const { load } = loader()
    const held = await cache.acquire('a/1', WEIGHT_BYTES, load)
    const other = cache.acquire('b/1', WEIGHT_BYTES, load)
    await new Promise((r) => setTimeout(r, 0))
    expect(
      cache
        .list()
        .map((r) => `${r.key} ${r.state}`)
        .sort(),
    ).toEqual(['a/1 AVAILABLE', 'b/1 LOADING'])
    expect(cache.counters.evictions).toBe(0)
    held.release()
    ;(await other).release()
    expect(cache.list().map((r) => r.key)).toEqual(['b/1'])
    expect(cache.counters.evictions).toBe(1)
  })

  it('refuses, after measuring it, a model that cannot run one row within the budget: 503 with the figures', async () => {
    cache = new ModelCache({ budgetBytes: MODEL_BYTES - 1, backoffBaseMs: 1000, backoffMaxMs: 4000, now: clock.now })
    const { state, load } = loader()
    const error = await cache.acquire('big/1', WEIGHT_BYTES, load).catch((e) => e)
    expect(error).toBeInstanceOf(ModelUnavailableError)
    expect(error.message).toMatch(
      new RegExp(
        `needs ${MODEL_BYTES} bytes with one row running \\(weights \\d+ \\+ kernels \\d+ \\+ one row \\d+\\), more than the cache budget of ${MODEL_BYTES - 1} bytes`,
      ),
    )
    expect(state.builds).toBe(1)
    expect(state.disposed).toBe(1)
    expect(cache.residentBytes()).toBe(0)
  })

  it('drops only models idle longer than the TTL', async () => {
    const { load } = loader()
    ;(await cache.acquire('old/1', WEIGHT_BYTES, load)).release()
    clock.advance(60_000)
    ;(await cache.acquire('new/1', WEIGHT_BYTES, load)).release()
    const held = await cache.acquire('held/1', WEIGHT_BYTES, load)
    clock.advance(60_000)
    expect(cache.dropIdle(90_000)).toEqual(['old/1'])
    expect(keys()).toEqual(['held/1', 'new/1'])
    held.release()
  })

  it('a released lease cannot be used again', async () => {
    const { load } = loader()
    const lease = await cache.acquire('m/1', WEIGHT_BYTES, load)
    lease.release()
    lease.release() // idempotent
    expect(() => lease.model).toThrow(/after release/)
  })
})
