/**
 * The JavaScript memory pool of the requests in flight (src/traffic/request-memory.ts,
 * REQUEST_MEMORY_BYTES): what a body reserves, and the pool's first-come-first-served line. Through
 * HTTP: test/traffic.test.ts ("REQUEST_MEMORY_BYTES").
 */
import { describe, expect, it } from 'vitest'
import { RequestMemory, requestMemoryBytes } from '../src/traffic/request-memory'

const MiB = 1024 * 1024
const limits = { maxBodyBytes: 8 * MiB }

describe('requestMemoryBytes', () => {
  it('counts a JSON body 3×, a binary or image one 2×, a chunked one as MAX_BODY_BYTES', () => {
    expect(requestMemoryBytes({ ...limits, declared: 1000, contentType: 'application/json' })).toBe(3000)
    expect(requestMemoryBytes({ ...limits, declared: 1000, contentType: undefined })).toBe(3000)
    expect(requestMemoryBytes({ ...limits, declared: 1000, contentType: 'application/octet-stream' })).toBe(2000)
    expect(
      requestMemoryBytes({ ...limits, declared: 1000, contentType: 'application/vnd.sagemaker-triton.binary+json' }),
    ).toBe(2000)
    expect(requestMemoryBytes({ ...limits, declared: 1000, contentType: 'image/jpeg; q=1' })).toBe(2000)
    expect(requestMemoryBytes({ ...limits, declared: undefined, contentType: 'application/json' })).toBe(8 * MiB)
    expect(requestMemoryBytes({ ...limits, declared: NaN, contentType: 'application/json' })).toBe(8 * MiB)
    // A declared length past MAX_BODY_BYTES is a 413 when read; until then it counts as the limit.
    expect(requestMemoryBytes({ ...limits, declared: 100 * MiB, contentType: 'application/json' })).toBe(24 * MiB)
  })
})

describe('RequestMemory', () => {
  it('lets requests in at once while they fit, then first come first served; one larger than the pool runs alone', async () => {
    const pool = new RequestMemory(100)
    const a = await pool.reserve(60)
    const b = await pool.reserve(40)
    expect(pool.used).toBe(100)
    const order: string[] = []
    const big = pool.reserve(1_000).then((release) => (order.push('big'), release))
    const small = pool.reserve(1).then((release) => (order.push('small'), release))
    await Promise.resolve()
    expect([pool.queued, order]).toEqual([2, []])
    a()
    await Promise.resolve()
    // The head of the line needs the whole pool: the small one waits behind it.
    expect(order).toEqual([])
    b()
    b() // idempotent
    const releaseBig = await big
    expect([pool.used, pool.queued, order]).toEqual([100, 1, ['big']])
    releaseBig()
    ;(await small)()
    expect([pool.used, pool.queued, order]).toEqual([0, 0, ['big', 'small']])
  })

  it('takes a waiter out of the line when its signal aborts, and gives a holder its bytes back', async () => {
    const pool = new RequestMemory(10)
    const holder = new AbortController()
    await pool.reserve(10, holder.signal)
    const waiter = new AbortController()
    const waiting = pool.reserve(5, waiter.signal)
    const next = pool.reserve(5)
    waiter.abort(new Error('gone'))
    await expect(waiting).rejects.toThrow('gone')
    expect([pool.used, pool.queued]).toEqual([10, 1])
    holder.abort()
    ;(await next)()
    expect([pool.used, pool.queued]).toEqual([0, 0])
  })

  it('admits waiters at once when the pool is made larger', async () => {
    const pool = new RequestMemory(10)
    await pool.reserve(10)
    const waiting = pool.reserve(10)
    pool.configure(20)
    ;(await waiting)()
    expect(pool.used).toBe(10)
  })
})
