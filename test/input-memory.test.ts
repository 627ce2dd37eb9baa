/**
 * More of the isolate's memory in the budget (issue 22, items 6 and 7): a decode while it runs, a
 * request's input rows (twice for several: room for their sub-batches), and numeric input tensors, reserved before they are
 * made; the decoders keep no heap between decodes. Real photographs (test/fixtures/models/_images/) into
 * nsfwjs's stock MobileNetV2 with an image input (`nsfw-images`, test/setup/assets.ts), under the
 * default settings.
 */
import { env } from 'cloudflare:workers'
import { describe, expect, it, vi } from 'vitest'
import { isolate, resetIsolate } from '../src/isolate'
import { reservedTensor } from '../src/cache/memory-gate'
import { decoderHeapBytes, decoderHeapHighWaterBytes } from '../src/protocols/images/decode'
import { activationBytes } from '../src/runtime/footprint'
import type { Servable } from '../src/runtime/servable'
import { tf } from '../src/runtime/tf'
import { binaryInfer, call, post } from './support/helpers'
import { freshWasmIsolate } from './support/wasm-helpers'
import { base64, photo as photoBytes } from './support/photos'

/** A fixture photo's bytes as base64, from the test assets. */
async function photo(name: string): Promise<string> {
  return base64(await photoBytes(name))
}

async function infer(images: string[]) {
  const res = await post('/v2/models/nsfw-images/infer', {
    inputs: [{ name: 'input_1', datatype: 'BYTES', shape: [images.length], data: images }],
  })
  const body = await res.json<{ error?: string; outputs?: { shape: number[] }[] }>()
  return { status: res.status, body }
}

const ledger = () => isolate().cache.admission.ledger
/** 224×224 RGB as float32: one row of the model's input. */
const ROW_BYTES = 224 * 224 * 3 * 4

describe('the budget counts what images take', () => {
  freshWasmIsolate()

  it("answers photos under the defaults and releases every decode's and row's reservation after the request", async () => {
    expect(ledger().used('decoder')).toBe(0)
    const res = await infer([await photo('chelsea.jpg'), await photo('chelsea.png')])
    expect(res.status, res.body.error).toBe(200)
    expect(res.body.outputs![0]!.shape).toEqual([2, 5])
    // The JPEG decoder ran (a PNG is decoded in JavaScript) and kept no heap.
    expect(decoderHeapHighWaterBytes()).toBeGreaterThan(0)
    expect(decoderHeapBytes()).toEqual({ jpg: 0, webp: 0 })
    // Nothing transient is left: the model alone.
    expect(ledger().used()).toBe(ledger().used('resident'))
    expect(ledger().highWater).toBeLessThanOrEqual(ledger().limit)
  }, 300_000)

  it('refuses rows that cannot fit beside the model with a 413 naming the figures, before decoding, leaving nothing behind', async () => {
    const small = await photo('chelsea-small.jpg')
    // The model is resident now: count its tensors before.
    const tensors = tf.memory().numTensors
    const rows = 48
    const { status, body } = await infer(Array(rows).fill(small))
    console.log(`${rows} photos: ${status} ${body.error}`)
    expect(status, body.error).toBe(413)
    expect(body.error).toContain(`${rows * ROW_BYTES * 2} bytes`)
    expect(body.error).toContain('CACHE_BUDGET_BYTES')
    expect(tf.memory().numTensors).toBe(tensors)
    expect(ledger().used()).toBe(ledger().used('resident'))
    // The model still answers a batch that fits.
    const four = await infer(Array(4).fill(small))
    expect(four.status, four.body.error).toBe(200)
    expect(four.body.outputs![0]!.shape).toEqual([4, 5])
    expect(tf.memory().numTensors).toBe(tensors)
  }, 300_000)

  it('keeps no WebP decoder heap, and nothing of the decode in the budget', async () => {
    const res = await post('/v2/models/digits/infer', {
      inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [await photo('chelsea-lossless.webp')] }],
    })
    expect(res.status, await res.clone().text()).toBe(200)
    expect(decoderHeapBytes()).toEqual({ jpg: 0, webp: 0 })
    expect(ledger().used()).toBe(ledger().used('resident'))
    expect(ledger().highWater).toBeLessThanOrEqual(ledger().limit)
  }, 300_000)
})

/** `rowsum-batched` sums each row of x [n, m]: its activations are its n sums, far less than its input. */
const ROWSUM = 'rowsum-batched'
const modelStatus = (key: string, bindings: Env = env) =>
  isolate()
    .status(bindings)
    .models.find((m) => m.key === key)
const withBudget = (budget: number) => ({ ...env, CACHE_BUDGET_BYTES: String(budget) }) as Env

/** Sums `rows` rows of `columns` ones through TF Serving's columnar JSON (the packed reader's path). */
async function rowsums(rows: number, columns: number, bindings: Env = env) {
  const row = `[${Array(columns).fill(1).join(',')}]`
  const res = await call(
    `/v1/models/${ROWSUM}:predict`,
    {
      method: 'POST',
      body: `{"inputs":{"x":[${Array(rows).fill(row).join(',')}]}}`,
      headers: { 'content-type': 'application/json' },
    },
    bindings,
  )
  return { status: res.status, body: await res.json<{ outputs?: number[]; error?: string }>() }
}

/** A fresh isolate with digits loaded and idle: its footprint and its input's name. */
async function freshDigits() {
  resetIsolate()
  const { lease } = await isolate().lease(env, 'digits')
  const digits = { f: lease.model.footprint, input: lease.model.signature.inputs[0]!.name }
  lease.release()
  return digits
}

describe('numeric inputs reserve their bytes before they are built', () => {
  freshWasmIsolate()

  it('evicts an idle model for an input that cannot fit beside it before the tensor is made, not after a failed allocation', async () => {
    resetIsolate()
    // digits resident and idle; rowsum measured by a first small request (its inputs have an unknown dimension).
    expect((await call('/v2/models/digits/ready')).status).toBe(200)
    expect((await rowsums(1, 1024)).status).toBe(200)
    const digits = modelStatus('digits/1')!
    const sum = modelStatus(`${ROWSUM}/1`)!
    // Room beside both models for a run of this model (a few bytes of sums), not for its 1.5× larger input.
    const room = digits.bytes
    const budget = withBudget(digits.bytes + sum.bytes + room)
    const [rows, columns] = [16, Math.ceil((1.5 * room) / 16 / 4)]
    const inputBytes = rows * columns * 4
    const evictions = isolate().status(budget).counters.evictions
    // When digits goes, what tf.js holds: the input must not be made yet.
    const tensorBytes = tf.memory().numBytes
    let evicted: { reason?: string; tensorBytes: number } | undefined
    const info = vi.spyOn(console, 'log').mockImplementation((line: unknown) => {
      const entry = JSON.parse(String(line)) as { event?: string; model?: string; reason?: string }
      if (entry.event === 'model.evicted' && entry.model === 'digits/1')
        evicted = { reason: entry.reason, tensorBytes: tf.memory().numBytes }
    })
    let res: Awaited<ReturnType<typeof rowsums>>
    try {
      res = await rowsums(rows, columns, budget)
    } finally {
      info.mockRestore()
    }
    expect(res.status, res.body.error).toBe(200)
    expect(res.body.outputs).toEqual(Array(rows).fill(columns))
    expect(modelStatus('digits/1', budget)).toBeUndefined()
    expect(isolate().status(budget).counters.evictions).toBe(evictions + 1)
    // Evicted for the budget (an allocation that failed would evict for the heap), with the input not yet on it.
    expect(evicted?.reason).toBe('budget')
    expect(evicted!.tensorBytes - tensorBytes).toBeLessThan(inputBytes)
    // Nothing of the input is left in the budget: the model alone.
    expect(ledger().used()).toBe(ledger().used('resident'))
  }, 120_000)

  it('refuses an input that cannot fit the budget beside its model with a 413 naming the figures, before it is made', async () => {
    const sum = modelStatus(`${ROWSUM}/1`)!
    const limit = sum.bytes + 1_000_000
    const budget = withBudget(limit)
    const [rows, columns] = [4, 65_536]
    const tensors = tf.memory().numTensors
    const data = new Float32Array(rows * columns).fill(1)
    const res = await call(
      `/v2/models/${ROWSUM}/infer`,
      binaryInfer([{ name: 'x', datatype: 'FP32', shape: [rows, columns], data: new Uint8Array(data.buffer) }]),
      budget,
    )
    const body = await res.json<{ error?: string }>()
    console.log(`${rows}×${columns} floats beside ${ROWSUM} in a budget of ${limit}: ${res.status} ${body.error}`)
    expect(res.status, body.error).toBe(413)
    expect(body.error).toContain(
      `input 'x' data (a [${rows}, ${columns}] float32 tensor) needs ${rows * columns * 4} bytes`,
    )
    expect(body.error).toContain(`cache budget of ${limit} bytes (CACHE_BUDGET_BYTES)`)
    expect(tf.memory().numTensors).toBe(tensors)
    expect(ledger().used()).toBe(ledger().used('resident'))
    // The same model answers an input that fits.
    const fits = await rowsums(4, 1024, budget)
    expect(fits.status, fits.body.error).toBe(200)
    expect(fits.body.outputs).toEqual([1024, 1024, 1024, 1024])
  }, 120_000)

  it("lets two requests whose inputs each take the room of the other's run both run, one after the other", async () => {
    const { f, input } = await freshDigits()
    // Inputs of at most two thirds of a row's run each, so that both fit beside the model where a run fits.
    const one = activationBytes(f, 1)!
    const rows = Math.min(64, Math.floor(one / 1.5 / (28 * 28 * 4)))
    expect(rows).toBeGreaterThan(0)
    const inputBytes = rows * 28 * 28 * 4
    const resident = modelStatus('digits/1')!.bytes
    // Room for the model, a run of one row and half an input: not for one row beside the other's input.
    const budget = withBudget(resident + one + inputBytes / 2)
    const [a, b] = [await isolate().lease(budget, 'digits'), await isolate().lease(budget, 'digits')]
    try {
      const inputs = await Promise.all(
        [a, b].map((_, i) => reservedTensor(inputBytes, `input ${i}`, () => tf.fill([rows, 28, 28, 1], i / 2))),
      )
      expect(ledger().used('input')).toBe(2 * inputBytes)
      // The first run does not fit beside the second's input: it waits, giving up its own input's room, so
      // the second runs; waiting holding it, the second would find nothing under way and answer 503.
      const outputs = await Promise.all([a, b].map(({ lease }, i) => lease.model.run({ [input]: inputs[i]! })))
      expect(outputs.map((o) => Object.values(o)[0]!.shape)).toEqual([
        [rows, 10],
        [rows, 10],
      ])
      tf.dispose([...inputs, ...outputs.flatMap((o) => Object.values(o))])
      expect(ledger().used()).toBe(ledger().used('resident'))
    } finally {
      a.lease.release()
      b.lease.release()
    }
  })

  it("keeps a request's inputs counted while it runs in sub-batches, each sub-batch's rows a copy beside them", async () => {
    const { f, input } = await freshDigits()
    const rows = 8
    const inputBytes = rows * 28 * 28 * 4
    // Room for the model, the whole input and a run of 3 rows beside it: 8 rows run in sub-batches.
    const budget = withBudget(modelStatus('digits/1')!.bytes + inputBytes + activationBytes(f, 3)!)
    const { lease } = await isolate().lease(budget, 'digits')
    // What the budget holds as each sub-batch starts: the model's own run, under the admission.
    const model = Object.getPrototypeOf(lease.model) as Servable
    const run = model.run
    const seen: { rows: number; input: number; used: number }[] = []
    const spy = vi.spyOn(model, 'run').mockImplementation(async (feeds) => {
      seen.push({ rows: Object.values(feeds)[0]!.shape[0]!, input: ledger().used('input'), used: ledger().used() })
      return run.call(model, feeds)
    })
    const x = await reservedTensor(inputBytes, 'the test input', () => tf.fill([rows, 28, 28, 1], 0.5))
    try {
      const outputs = await lease.model.run({ [input]: x })
      expect(Object.values(outputs)[0]!.shape).toEqual([rows, 10])
      tf.dispose(Object.values(outputs))
    } finally {
      spy.mockRestore()
      lease.release()
      x.dispose()
    }
    expect(seen.length).toBeGreaterThan(1)
    expect(seen.reduce((n, s) => n + s.rows, 0)).toBe(rows)
    // The whole input stays counted beside every sub-batch, and all of it within the budget.
    for (const s of seen) expect(s).toMatchObject({ input: inputBytes })
    expect(Math.max(...seen.map((s) => s.used))).toBeLessThanOrEqual(ledger().limit)
    expect(ledger().used('input')).toBe(0)
  })
})
