/**
 * Fragmentation held (issue 22, item 10): one isolate, the default settings, cycling real models
 * nobody here trained (nsfwjs's MobileNetV2 twice, as tensors and as JPEGs; @vladmandic/human's
 * faceres) and the bundled digits, with random 1–4-row requests. WebAssembly memory never shrinks,
 * so what loads and evictions leave behind must not add up: every answer is a 200 and the wasm heap
 * never passes its cap. `npm test` runs SOAK_ROUNDS=2 rounds; `npm run soak` runs 50.
 */
import { afterAll, beforeAll, expect, inject, it } from 'vitest'
import { isolate, resetIsolate } from '../src/isolate'
import { guardedBackend } from '../src/runtime/wasm-guard'
import { binaryInfer, call } from './support/helpers'
import { random } from './support/random'
import { restoreWasm } from './support/wasm-helpers'

interface Metadata {
  inputs: { name: string; datatype: string; shape: number[] }[]
}

/** The models cycled: each answers a request of its own kind. */
const MODELS = ['nsfw-mobilenet-v2', 'faceres', 'nsfw-images', 'digits']

let photo: string
const metadata = new Map<string, Metadata>()

/** A v2 binary infer request of `rows` rows of pixels for a tensor input, or `rows` JPEGs for an image input. */
function request(name: string, rows: number, next: () => number): RequestInit & { path: string } {
  const [input] = metadata.get(name)!.inputs
  if (input!.datatype === 'BYTES') {
    return {
      path: `/v1/models/${name}:predict`,
      method: 'POST',
      body: JSON.stringify({ instances: Array.from({ length: rows }, () => ({ b64: photo })) }),
    }
  }
  const row = input!.shape.slice(1).reduce((a, b) => a * b, 1)
  const data = new Float32Array(rows * row)
  for (let i = 0; i < data.length; i++) data[i] = next()
  return {
    path: `/v2/models/${name}/infer`,
    ...binaryInfer(
      [
        {
          name: input!.name,
          datatype: 'FP32',
          shape: [rows, ...input!.shape.slice(1)],
          data: new Uint8Array(data.buffer),
        },
      ],
      { binary_data_output: true },
    ),
  }
}

beforeAll(async () => {
  resetIsolate()
  for (const name of MODELS) {
    const answer = await call(`/v2/models/${name}`)
    expect(answer.status, name).toBe(200)
    metadata.set(name, await answer.json<Metadata>())
  }
  const { env } = await import('cloudflare:workers')
  const jpeg = await (await env.ASSETS.fetch('https://a/_images/chelsea-small.jpg')).arrayBuffer()
  photo = btoa(String.fromCharCode(...new Uint8Array(jpeg)))
})

afterAll(restoreWasm)

const rounds = inject('soakRounds')
/**
 * The test's bound grows with its length: most requests load their model again (the four do not fit
 * the budget together), ~0.6 s each here; 2 s a request leaves room for a loaded machine.
 */
const BOUND_MS = 30_000 + rounds * MODELS.length * 2_000

it(
  'answers every random 1–4-row request to every model with a 200, the heap never past its cap',
  async () => {
    const next = random(22)
    const failures: string[] = []
    let requests = 0
    let highWater = 0
    let cap = 0
    for (let round = 0; round < rounds; round++) {
      for (const name of MODELS) {
        const rows = 1 + Math.floor(next() * 4)
        const { path, ...init } = request(name, rows, next)
        const res = await call(path, init)
        const text = res.status === 200 ? (await res.arrayBuffer(), '') : await res.text()
        requests++
        if (res.status !== 200) failures.push(`round ${round}, ${name} × ${rows}: ${res.status} ${text.slice(0, 300)}`)
        const heap = guardedBackend()!.heap()
        highWater = Math.max(highWater, heap.bytes)
        cap = heap.maxBytes
      }
    }
    const cache = isolate().cache
    console.log(
      `soak-models: ${rounds} rounds, ${requests} requests, ${failures.length} not 200; wasm heap high-water ${highWater} of ${cap} bytes; ${cache.counters.evictions} evictions, ${cache.counters.loads} loads`,
    )
    expect(failures).toEqual([])
    expect(highWater).toBeLessThanOrEqual(cap)
  },
  BOUND_MS,
)
