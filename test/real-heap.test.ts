/**
 * Memory counted from the wasm heap itself, under the default settings, with models nobody here trained:
 * nsfwjs's stock MobileNetV2 (Keras, 224×224×3) and @vladmandic/human's faceres (a MobileNet v1).
 * The heap's cap, not only the budget, is what loads and runs are admitted against: a load or run
 * that cannot get heap evicts idle models and tries again; a failed load leaves no tensor behind;
 * a heap that can no longer load what it loaded before is rebuilt, and readiness says so meanwhile.
 */
import { env } from 'cloudflare:workers'
import { encode as encodePng } from 'fast-png'
import { afterAll, describe, expect, it } from 'vitest'
import { loadLayersModel } from '@tensorflow/tfjs-layers'
import type * as tfl from '@tensorflow/tfjs-layers'
import { isolate, resetIsolate } from '../src/isolate'
import { storeHandler } from '../src/repository/model-files'
import { assetsStore } from '../src/repository/stores'
import { tf } from '../src/runtime/tf'
import { guardedBackend } from '../src/runtime/wasm-guard'
import { binaryInfer, call, post } from './support/helpers'
import { fragmentHeap, freshWasmIsolate, resetWasmIsolate, restoreWasm } from './support/wasm-helpers'

const MOBILENET = 'nsfw-mobilenet-v2'
const ROW = 224 * 224 * 3
const MiB = 1024 * 1024

/** Deterministic pixels in [0, 1) for `rows` rows, different per row. */
function pixels(rows: number, seed = 1): Float32Array {
  const data = new Float32Array(rows * ROW)
  for (let i = 0; i < data.length; i++) data[i] = (((i + seed * 7919) * 2654435761) % 1000) / 1000
  return data
}

/** A v2 infer request with `rows` rows as binary tensor data (a JSON body of 10 rows would pass MAX_BODY_BYTES). */
async function infer(model: string, input: string, rows: number, seed = 1, bindings: Env = env) {
  const data = pixels(rows, seed)
  const res = await call(
    `/v2/models/${model}/infer`,
    binaryInfer([{ name: input, datatype: 'FP32', shape: [rows, 224, 224, 3], data: new Uint8Array(data.buffer) }], {
      binary_data_output: false,
    }),
    bindings,
  )
  const json = await res.json<{ outputs?: { name: string; shape: number[]; data: number[] }[]; error?: string }>()
  return { status: res.status, json }
}

const heap = () => guardedBackend()!.heap()

describe('under the default settings', () => {
  freshWasmIsolate()

  it("serves the stock MobileNetV2 a 10-row request in sub-batches, equal within 1e-4 to each row run alone and to tf.js's reference kernels", async () => {
    const ten = await infer(MOBILENET, 'input_1', 10)
    expect(ten.status, ten.json.error).toBe(200)
    const status = isolate().status(env)
    const model = status.models.find((m) => m.key === `${MOBILENET}/1`)!
    console.log(
      `${MOBILENET}: counted ${model.memoryBytes} (${JSON.stringify(model.footprint)}), heap ${status.wasmHeap!.bytes}, budget ${status.budgetBytes}`,
    )
    expect(model.footprint!.measured).toMatch(/^heap-1/)
    expect(status.budgetHighWaterBytes).toBeLessThanOrEqual(status.budgetBytes)
    expect(status.wasmHeap!.highWaterBytes).toBeLessThanOrEqual(heap().maxBytes)
    const got = ten.json.outputs![0]!
    expect(got.shape).toEqual([10, 5])

    // The references: the same files loaded here, outside the Worker's cache. Every row alone on a
    // fresh instance of the wasm backend (one row at a time: what the sub-batches, of several rows
    // each, must give row for row), and the first and last rows on tf.js's cpu backend (plain
    // JavaScript kernels, the same in Node): the kernels' independent reference, as test/backend.test.ts
    // has for the operations MobileNetV2 is made of (conv2d, depthwiseConv2d, relu6). All ten rows on
    // the cpu backend took most of this file's time (about 1.6 s a row on a busy machine); two check the kernels as well.
    const artifacts = await storeHandler(assetsStore(env.ASSETS, 15_000), `${MOBILENET}/1`).load()
    const all = pixels(10)
    /** The reference model's output rows for `rows` of the ten, run in one batch. */
    const outputs = async (model: tfl.LayersModel, rows: number[]): Promise<Float32Array> => {
      const data = new Float32Array(rows.length * ROW)
      rows.forEach((row, i) => data.set(all.subarray(row * ROW, (row + 1) * ROW), i * ROW))
      const x = tf.tensor4d(data, [rows.length, 224, 224, 3])
      const y = model.predict(x) as tf.Tensor
      const values = (await y.data()) as Float32Array
      tf.dispose([x, y])
      return values
    }
    const on = async (rows: number[][]): Promise<Float32Array[]> => {
      const model = await loadLayersModel(tf.io.fromMemory(artifacts))
      try {
        const answers: Float32Array[] = []
        for (const batch of rows) answers.push(await outputs(model, batch))
        return answers
      } finally {
        model.dispose()
      }
    }
    const worstOf = (rows: number[], want: Float32Array) =>
      rows.reduce((m, row, i) => {
        for (let k = 0; k < 5; k++) m = Math.max(m, Math.abs(got.data[row * 5 + k]! - want[i * 5 + k]!))
        return m
      }, 0)
    await resetWasmIsolate()
    const onWasm = await on(Array.from({ length: 10 }, (_, row) => [row]))
    await tf.setBackend('cpu')
    try {
      const [onCpu] = await on([[0, 9]])
      const worst = Math.max(...onWasm.map((want, row) => worstOf([row], want)))
      const worstCpu = worstOf([0, 9], onCpu!)
      console.log(
        `${MOBILENET}, 10 rows: largest difference from the wasm reference, row by row, ${worst}; rows 0 and 9 from the cpu reference ${worstCpu}`,
      )
      expect(worst).toBeLessThanOrEqual(1e-4)
      expect(worstCpu).toBeLessThanOrEqual(1e-4)
    } finally {
      await restoreWasm()
    }
  }, 180_000)

  it('switches back and forth between two MobileNet-sized models, every answer 200, the heap within its cap', async () => {
    resetIsolate()
    const statuses: number[] = []
    const errors: string[] = []
    /** Each model's load as the request left it: its counted activation figures, and whether warmup ran a 2-row batch. */
    const loads = new Map<string, { figures: unknown; warmup2: boolean }[]>()
    for (let round = 0; round < 4; round++) {
      for (const [model, input] of [
        [MOBILENET, 'input_1'],
        ['faceres', 'input_1'],
      ] as const) {
        const { status, json } = await infer(model, input, 1 + ((round * 3 + model.length) % 4), round)
        statuses.push(status)
        if (json.error) errors.push(json.error)
        const loaded = isolate()
          .status(env)
          .models.find((m) => m.key === `${model}/1`)
        if (loaded) {
          const { activationBytes, rowBytes, measured } = loaded.footprint!
          const seen = loads.get(model) ?? []
          seen.push({
            figures: { activationBytes, rowBytes, measured },
            warmup2: loaded.timings!.warmup2Ms !== undefined,
          })
          loads.set(model, seen)
        }
      }
    }
    const status = isolate().status(env)
    console.log(
      `switching: ${statuses.join(' ')}; heap high-water ${status.wasmHeap!.highWaterBytes} of ${heap().maxBytes}; evictions ${status.counters.evictions}`,
    )
    expect(errors).toEqual([])
    expect(statuses.every((s) => s === 200)).toBe(true)
    expect(status.wasmHeap!.highWaterBytes).toBeLessThanOrEqual(heap().maxBytes)
    // They do not fit side by side: every request loaded its model again. Measured at its first load only
    // (the 2-row warmup), each later load of the same files counted the same figures.
    expect(status.counters.loads).toBe(8)
    for (const model of [MOBILENET, 'faceres']) {
      const [first, ...later] = loads.get(model)!
      expect(first!.warmup2, model).toBe(true)
      expect(later, model).toEqual(Array(3).fill({ figures: first!.figures, warmup2: false }))
    }
  }, 300_000)

  it('serves inputs that a fresh heap holds but no block of the fragmented one: the heap is rebuilt, 200, not 413', async () => {
    resetIsolate()
    expect((await infer(MOBILENET, 'input_1', 1)).status).toBe(200)
    // The heap's free space in blocks of 1 MiB at most, the model resident: 8 rows are one 4.8 MB tensor.
    const { freeBytes, largestFreeBytes, release } = fragmentHeap(MiB, MiB)
    const before = guardedBackend()
    let eight: Awaited<ReturnType<typeof infer>>
    try {
      expect(largestFreeBytes).toBeLessThan(8 * ROW * 4)
      expect(freeBytes).toBeGreaterThan(8 * ROW * 4)
      eight = await infer(MOBILENET, 'input_1', 8)
    } finally {
      release()
    }
    expect(eight.status, eight.json.error).toBe(200)
    // As booleans: a failing toBe would print the backend, wasm heap and all (tens of seconds, or the pool's heap).
    expect(guardedBackend() !== before, 'a new backend').toBe(true)
    // The same rows on the fresh heap, nothing fragmented: the same answer.
    const again = await infer(MOBILENET, 'input_1', 8)
    expect(again.status, again.json.error).toBe(200)
    expect(eight.json.outputs![0]!.data).toEqual(again.json.outputs![0]!.data)
  }, 300_000)

  it('answers many tiny images in one BYTES request to a 224×224 model with 200 or 413, never 500', async () => {
    resetIsolate()
    const png = encodePng({ width: 2, height: 2, channels: 3, depth: 8, data: new Uint8Array(12).fill(128) })
    const b64 = btoa(String.fromCharCode(...png))
    for (const n of [1, 8, 32, 64]) {
      const res = await post('/v2/models/nsfw-images/infer', {
        inputs: [{ name: 'input_1', datatype: 'BYTES', shape: [n], data: Array(n).fill(b64) }],
      })
      const body = await res.json<{ error?: string; outputs?: { shape: number[] }[] }>()
      console.log(`${n} tiny images: ${res.status} ${body.error ?? JSON.stringify(body.outputs![0]!.shape)}`)
      // Up to 32 (19.3 MB of rows): served, their rows made off the heap where one row has no room beside them.
      expect(n <= 32 ? [200] : [200, 413], body.error).toContain(res.status)
    }
  }, 300_000)

  it('lists every model and reads its metadata (v2 and TF Serving) without loading any whose model.json declares its signature', async () => {
    resetIsolate()
    const index = await (await post('/v2/repository/index', {})).json<{ name: string }[]>()
    expect(index.length).toBeGreaterThan(5)
    const repository = await isolate().repository(env)
    const declared = index
      .map(({ name }) => name)
      .filter((name) => {
        // A model whose config.json is invalid answers 503 with the reason (test/fixtures/models/pair-typo).
        const target = (() => {
          try {
            return repository.resolve(name)
          } catch {
            return undefined
          }
        })()
        return (
          target !== undefined &&
          typeof target.config.labels !== 'string' &&
          isolate().knownSignature(target) !== undefined
        )
      })
    for (const name of declared) {
      for (const path of [`/v2/models/${name}`, `/v1/models/${name}/metadata`]) {
        const res = await call(path)
        expect([200, 503], `${path}: ${res.status}`).toContain(res.status)
      }
    }
    // Graph and layers models alike, the MobileNets among them: nothing was loaded.
    expect(declared).toEqual(expect.arrayContaining(['faceres', MOBILENET, 'pair', 'flower', 'digits']))
    expect(isolate().status(env).models).toEqual([])
    expect(isolate().status(env).counters.loads).toBe(0)
  }, 120_000)
})

describe('a heap too small for the model', () => {
  afterAll(resetWasmIsolate)

  it('refuses the load with the figures and leaves no tensor behind', async () => {
    resetIsolate()
    // The isolate's own backend with a small cap, so that its rebuilds keep the cap.
    await tf.setBackend('cpu')
    isolate().backend.wasm.useModule(undefined, { maxHeapBytes: 24 * 1024 * 1024 })
    await isolate().backend.wasm.activate()
    const tensors = tf.memory().numTensors
    const res = await call('/v2/models/faceres/ready')
    const body = await res.json<{ error?: string }>()
    expect(res.status).toBe(503)
    expect(body.error).toMatch(
      /^model faceres\/1 could not be loaded: it cannot be loaded even alone on a fresh wasm heap of at most 25165824 bytes: /,
    )
    // A sound backend is left for the next model.
    expect((await call('/v2/health/ready')).status).toBe(200)
    expect(tf.memory().numTensors).toBe(tensors)
    expect(isolate().status(env).models).toEqual([])
  }, 120_000)
})

describe('a heap rebuilt for fragmentation', () => {
  afterAll(resetWasmIsolate)

  it('makes readiness 503 while it is rebuilt, and 200 after', async () => {
    await resetWasmIsolate()
    expect((await call('/v2/health/ready')).status).toBe(200)
    const before = guardedBackend()
    const rebuilding = isolate().cache.options.rebuildHeap!('a test')
    // Checked before ready() first waits, so while the rebuild has certainly not finished.
    const during = await isolate()
      .ready(env)
      .then(
        () => undefined,
        (error: Error) => error.message,
      )
    expect(during).toMatch(/heap is being rebuilt \(a test\)/)
    expect(await rebuilding).toBe(true)
    // As booleans: a failing toBe would print the backend, wasm heap and all (tens of seconds, or the pool's heap).
    expect(guardedBackend() !== before, 'a new backend').toBe(true)
    expect((await call('/v2/health/ready')).status).toBe(200)
  })
})
