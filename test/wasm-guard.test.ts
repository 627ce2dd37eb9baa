/**
 * The wasm backend cannot be corrupted: a failed allocation is a clean error before anything is
 * written, the heap grows no further than its cap, and a trap that escapes anyway marks the backend
 * broken (readiness says so) until a fresh instance replaces it.
 */
import { env } from 'cloudflare:workers'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { isolate, resetIsolate } from '../src/isolate'
import { tf } from '../src/runtime/tf'
import { backendBroken, GuardedWasmBackend } from '../src/runtime/wasm-guard'
import { call, post, SETOSA } from './support/helpers'
import { restoreWasm, useWasm } from './support/wasm-helpers'

const MiB = 1024 * 1024

async function iris() {
  const res = await post('/v1/models/iris:predict', { instances: [SETOSA] })
  return { status: res.status, body: await res.json<{ predictions?: number[][]; error?: string }>() }
}

async function digits() {
  return (
    await post('/v1/models/digits:predict', {
      instances: [Array.from({ length: 28 }, () => Array.from({ length: 28 }, () => [0]))],
    })
  ).status
}

const activeWasm = () => tf.backend() as GuardedWasmBackend

afterEach(() => resetIsolate())
afterAll(restoreWasm)

describe('a failed allocation', () => {
  it('is a clean error before anything is written, and the next inference of iris still answers right', async () => {
    isolate().backend.forget()
    expect(await isolate().backend.ensure()).toBe('wasm')
    const before = await iris()
    expect(before.status).toBe(200)
    expect(await digits()).toBe(200)
    const tensors = tf.memory().numTensors

    // UpSampling2D by 1170 of a 28×28 image, as the bomb asks at warmup: 32 760² floats, 4.3 GB.
    const x = tf.zeros([1, 28, 28, 1]) as tf.Tensor4D
    expect(() => tf.image.resizeNearestNeighbor(x, [32_760, 32_760])).toThrow(
      /^wasm backend: allocation of 4292870400 bytes failed \(heap \d+ bytes, at most \d+\)$/,
    )
    x.dispose()

    expect(tf.memory().numTensors).toBe(tensors)
    expect(backendBroken()).toBeUndefined()
    expect(await iris()).toEqual(before)
    expect(await digits()).toBe(200)
    expect((await call('/v2/health/ready')).status).toBe(200)
  })

  it('happens at the heap cap: the heap grows by 2 MiB or what is asked, never past the cap, and what fits under it still runs', async () => {
    const cap = 32 * MiB
    await useWasm({ maxHeapBytes: cap })
    const backend = activeWasm()
    expect(backend.heap()).toEqual({ bytes: 16 * MiB, maxBytes: cap }) // Emscripten's initial heap

    // 1 MiB at a time until the heap is full. Each growth is 2 MiB (GROWTH_STEP_BYTES), not the glue's
    // 20 % of the heap (3.2 MiB at the first), and the heap stops short of the cap only where the next
    // MiB no longer fits under it.
    const held: tf.Tensor[] = []
    const growths: number[] = []
    let error: unknown
    try {
      for (let i = 0; i < 64 && error === undefined; i++) {
        const before = backend.heap().bytes
        try {
          held.push(tf.zeros([MiB / 4]))
        } catch (e) {
          error = e
        }
        if (backend.heap().bytes > before) growths.push(backend.heap().bytes - before)
      }
      const failed =
        /^WasmAllocationError: wasm backend: allocation of 1048576 bytes failed \(heap (\d+) bytes, at most 33554432\)$/.exec(
          String(error),
        )
      expect(failed, String(error)).not.toBeNull()
      expect(Number(failed![1])).toBe(backend.heap().bytes)
      expect(backend.heap().bytes).toBeLessThanOrEqual(cap)
      expect(cap - backend.heap().bytes).toBeLessThan(MiB + 2 * 65_536)
      expect(growths.length).toBeGreaterThan(0)
      for (const growth of growths) expect(growth).toBeLessThanOrEqual(2 * MiB)
      expect(held.length).toBeGreaterThan(14) // the 16 MiB of growth was used, less allocator overhead
    } finally {
      tf.dispose(held)
    }
    // Freed, the same heap serves again, and a model runs on it.
    const y = tf.tidy(() => tf.sum(tf.ones([MiB])))
    expect(await y.data()).toEqual(new Float32Array([MiB]))
    y.dispose()
    expect(backendBroken()).toBeUndefined()
    expect((await iris()).status).toBe(200)
  })
})

describe('a trap that escapes from a kernel', () => {
  /** Breaks the active wasm backend as a write through a null pointer would: the next kernel traps. */
  function trap() {
    // A tensor whose data C believes lies past the end of the heap: the first kernel to read it traps.
    const info = activeWasm().makeOutput([1024], 'float32', 0xffff_0000)
    const bad = tf.engine().makeTensorFromTensorInfo(info)
    expect(() => tf.relu(bad)).toThrow(/^the wasm backend failed: memory access out of bounds \(in \w+\)$/)
    expect(backendBroken()).toMatch(/memory access out of bounds/)
    // Nothing more runs on that heap, not even a small op.
    expect(() => tf.add(tf.scalar(1), tf.scalar(2))).toThrow(
      /the wasm backend failed earlier: memory access out of bounds/,
    )
    return bad
  }

  it('marks the backend broken and makes readiness 503, then the isolate rebuilds it and its models by itself', async () => {
    await useWasm()
    const before = await iris()
    expect(before.status).toBe(200)
    const tensors = tf.memory().numTensors
    const bad = trap()

    const ready = await call('/v2/health/ready')
    expect(ready.status).toBe(503)
    expect(ready.headers.get('retry-after')).toBe('5')
    expect((await ready.json<{ error: string }>()).error).toMatch(
      /^not ready: the wasm backend failed: memory access out of bounds.*; it is being rebuilt$/,
    )

    // The readiness probe started the rebuild (call() waits for its waitUntil): a fresh heap, iris
    // loaded again on it, ready, and the same answers as before.
    expect(tf.getBackend()).toBe('wasm')
    expect(backendBroken()).toBeUndefined()
    expect(
      isolate()
        .status(env)
        .models.map((m) => [m.key, m.state]),
    ).toEqual([['iris/1', 'AVAILABLE']])
    expect((await call('/v2/health/ready')).status).toBe(200)
    expect(await iris()).toEqual(before)
    expect(isolate().cache.counters.hits).toBeGreaterThan(0)
    bad.dispose() // a tensor of the old instance: released without touching it
    resetIsolate()
    expect(tf.memory().numTensors).toBe(tensors - 4) // iris's four weights, disposed with the cache
  })

  it('rebuilds on the first request after the trap, which is answered', async () => {
    await useWasm()
    const before = await iris()
    const bad = trap()
    expect(await iris()).toEqual(before)
    expect(backendBroken()).toBeUndefined()
    bad.dispose()
  })
})
