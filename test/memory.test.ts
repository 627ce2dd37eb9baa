/**
 * Memory in real bytes: models measured as they load, a budget that
 * counts those bytes, loads that reserve before they start, and runs admitted in sub-batches that fit.
 * `faceres` is a model nobody on this project trained: @vladmandic/human's MobileNet v1 on 224×224×3
 * (test/setup/assets.ts copies it from node_modules).
 */
import { env } from 'cloudflare:workers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isolate, resetIsolate } from '../src/isolate'
import { memoryBytes } from '../src/runtime/footprint'
import { tf } from '../src/runtime/tf'
import { call } from './support/helpers'
import { resetWasmIsolate, useWasm } from './support/wasm-helpers'

interface WasmModule {
  HEAPU8: Uint8Array
  _malloc(bytes: number): number
  _free(pointer: number): void
}
const wasm = () => (tf.findBackend('wasm') as unknown as { wasm: WasmModule }).wasm
const heapBytes = () => wasm().HEAPU8.buffer.byteLength

/**
 * Takes the heap's free space (64 KiB blocks until the heap must grow), so that what a model then
 * needs shows as growth; returns the release. Test-only: in production it would grow the heap.
 */
function fillHeap(): () => void {
  const size = heapBytes()
  const blocks: number[] = []
  for (;;) {
    const p = wasm()._malloc(65536)
    if (heapBytes() !== size) {
      wasm()._free(p)
      break
    }
    blocks.push(p)
  }
  return () => blocks.forEach((p) => wasm()._free(p))
}

const withBudget = (budget: number) => ({ ...env, CACHE_BUDGET_BYTES: String(budget) }) as Env
const IMAGE = [224, 224, 3]
const rows = (n: number) => tf.randomUniform([n, ...IMAGE], 0, 1, 'float32', 7)

describe('faceres, a MobileNet at 224×224', () => {
  let heapAtStart = 0
  // A fresh wasm instance of its own, so the heap figures start from an empty heap whatever ran
  // before in this worker, with a cap (runtime/wasm-guard.ts) far above what is measured here.
  beforeAll(async () => {
    resetIsolate()
    await isolate().backend.ensure()
    await useWasm({ maxHeapBytes: 1024 * 1024 * 1024 })
    heapAtStart = heapBytes()
  })
  afterAll(resetWasmIsolate)

  it('answers a 10-row request as ten single-row ones, in sub-batches, the heap within the budget', async () => {
    const x = rows(10)
    const { lease } = await isolate().lease(env, 'faceres')
    const budget = isolate().status(env).budgetBytes
    try {
      const all = await lease.model.run({ input_1: x })
      for (let i = 0; i < 10; i++) {
        const one = tf.slice(x, i, 1)
        const single = await lease.model.run({ input_1: one })
        for (const [name, t] of Object.entries(all)) {
          const got = await tf.slice(t, i, 1).data()
          const want = await single[name]!.data()
          expect(got.length).toBe(want.length)
          got.forEach((v, j) => expect(Math.abs(v - want[j]!)).toBeLessThanOrEqual(1e-5))
        }
        tf.dispose([one, ...Object.values(single)])
      }
      tf.dispose(all)
    } finally {
      lease.release()
      x.dispose()
    }
    const status = isolate().status(env)
    const f = status.models.find((m) => m.key === 'faceres/1')!.footprint!
    // Ten rows at once would not fit: they ran in sub-batches.
    expect(f.weightBytes + f.kernelBytes + f.activationBytes + 10 * f.rowBytes).toBeGreaterThan(budget)
    expect(status.budgetHighWaterBytes).toBeLessThanOrEqual(budget)
    console.log(
      `10 rows: wasm heap ${heapAtStart} → high-water ${status.wasmHeap!.highWaterBytes}, growth ${status.wasmHeap!.highWaterBytes - heapAtStart}, budget ${budget}`,
    )
    expect(status.wasmHeap!.highWaterBytes - heapAtStart).toBeLessThanOrEqual(budget)
  }, 120_000)

  it('reports a memory within 40% of the wasm heap growth it causes (weights plus one row)', async () => {
    resetIsolate()
    const release = fillHeap()
    const filled = heapBytes()
    let reported: number
    try {
      const { lease } = await isolate().lease(env, 'faceres')
      reported = memoryBytes(lease.model.footprint)
      lease.release()
    } finally {
      release()
    }
    const growth = heapBytes() - filled
    const model = isolate()
      .status(env)
      .models.find((m) => m.key === 'faceres/1')!
    console.log(
      `faceres: reported ${reported} bytes, heap growth ${growth} (ratio ${(reported / growth).toFixed(2)}); ${JSON.stringify(model.footprint)}`,
    )
    expect(model.memoryBytes).toBe(reported)
    expect(reported / growth).toBeGreaterThan(0.6)
    expect(reported / growth).toBeLessThan(1.4)
  }, 120_000)

  it('answers 413 with the figures when one row cannot fit beside the model', async () => {
    const model = isolate()
      .status(env)
      .models.find((m) => m.key === 'faceres/1')!
    const tight = withBudget(model.memoryBytes! - 1)
    const { lease } = await isolate().lease(tight, 'faceres')
    const x = rows(1)
    try {
      const error = await lease.model.run({ input_1: x }).catch((e) => e)
      expect(error.status).toBe(413)
      expect(error.message).toMatch(
        new RegExp(
          `faceres/1: one row needs \\d+ bytes of activations beside the model's ${model.bytes} bytes, more than the cache budget of ${model.memoryBytes! - 1} bytes`,
        ),
      )
    } finally {
      lease.release()
      x.dispose()
    }
  })

  it('refuses at load, with a 503 naming the figures, a model that cannot run one row within the budget', async () => {
    resetIsolate()
    const res = await call('/v2/models/faceres/ready', undefined, withBudget(30_000_000))
    expect(res.status).toBe(503)
    expect(res.headers.get('Retry-After')).toBeTruthy()
    const { error } = await res.json<{ error: string }>()
    expect(error).toMatch(
      /model faceres\/1 could not be loaded: it needs \d+ bytes with one row running \(weights \d+ \+ kernels \d+ \+ one row \d+\), more than the cache budget of 30000000 bytes/,
    )
    expect(isolate().status(env).residentBytes).toBe(0)
  })

  it('reports the model memory, the budget and the wasm heap in /metrics, /admin/cache and v2 metadata', async () => {
    resetIsolate()
    // Metadata alone loads nothing (it is answered from the index): a readiness check loads.
    expect((await call('/v2/models/faceres/ready')).status).toBe(200)
    const meta = await (await call('/v2/models/faceres')).json<{ parameters: { memory_bytes: number } }>()
    const model = isolate()
      .status(env)
      .models.find((m) => m.key === 'faceres/1')!
    expect(meta.parameters.memory_bytes).toBe(model.memoryBytes)
    const text = await (await call('/metrics')).text()
    expect(text).toContain(
      `warmserve_model_memory_bytes{model="faceres",version="1",state="AVAILABLE"} ${model.memoryBytes}`,
    )
    // Counted (what the budget holds) and measured (what the heap gave) side by side.
    expect(text).toContain(
      `warmserve_model_memory_counted_bytes{model="faceres",version="1",state="AVAILABLE",source="${model.footprint!.measured}"} ${model.memoryBytes}`,
    )
    expect(text).toContain(
      `warmserve_model_memory_measured_bytes{model="faceres",version="1",state="AVAILABLE"} ${model.footprint!.heapBytes}`,
    )
    expect(text).toMatch(/warmserve_cache_budget_bytes \d+/)
    expect(text).toMatch(/warmserve_wasm_heap_bytes \d+/)
    expect(text).toMatch(/warmserve_wasm_heap_high_water_bytes \d+/)
    const admin = await (
      await call('/admin/cache', { headers: { Authorization: 'Bearer t' } }, { ...env, ADMIN_TOKEN: 't' } as Env)
    ).json<any>()
    expect(admin.models.find((m: any) => m.key === 'faceres/1').memoryBytes).toBe(model.memoryBytes)
  })
})

describe('loads reserve their bytes before they start', () => {
  it('8 concurrent first requests to 8 copies of digits never hold more than the budget', async () => {
    resetIsolate()
    const budget = 1_000_000
    const tight = withBudget(budget)
    const instance = { instances: [Array.from({ length: 28 }, () => Array.from({ length: 28 }, () => [0.5]))] }
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        call(
          `/v1/models/digits-copy-${i + 1}:predict`,
          { method: 'POST', body: JSON.stringify(instance), headers: { 'content-type': 'application/json' } },
          tight,
        ),
      ),
    )
    const statuses = answers.map((r) => r.status)
    expect(statuses.every((s) => s === 200 || s === 503)).toBe(true)
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0)
    const status = isolate().status(tight)
    expect(status.residentBytes).toBeLessThanOrEqual(budget)
    expect(status.budgetHighWaterBytes).toBeGreaterThan(0)
    expect(status.budgetHighWaterBytes).toBeLessThanOrEqual(budget)
  })
})
