// Soak: many mixed valid and invalid requests, then tf.memory() and every module-scope
// structure are where they were. `npm test` runs a bounded form; `npm run soak` the full 10,000.
import { env } from 'cloudflare:workers'
import { beforeAll, expect, inject, it } from 'vitest'
import { tf } from '../src/runtime/tf'
import { call, SETOSA } from './support/helpers'
import { isolate } from '../src/isolate'

const zeros = (n: number) => Array(n).fill(0)
const digit = () => Array.from({ length: 28 }, () => Array.from({ length: 28 }, () => [Math.random()]))

/** Each entry: a request and the status it must get. Valid and invalid, across both protocols. */
const MIX: [string, unknown, number][] = [
  ['/v1/models/iris:predict', { instances: [SETOSA, SETOSA] }, 200],
  ['/v1/models/digits:predict', { instances: [digit()] }, 200],
  [
    '/v2/models/pair/infer',
    {
      inputs: [
        { name: 'features', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] },
        { name: 'multiplier', shape: [1, 1], datatype: 'INT32', data: [2] },
      ],
    },
    200,
  ],
  [
    '/v2/models/positives/infer',
    { inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: [1, -1, 2, 0] }] },
    200,
  ],
  ['/v1/models/flower:predict', { inputs: { sepal: [[1, 2]], petal: [[3, 4]] } }, 200],
  ['/v1/models/iris:predict', { instances: [[1, 2, 3]] }, 400],
  ['/v1/models/iris:predict', { instances: [[1, 2, 'x', 4]] }, 400],
  ['/v1/models/digits:predict', { instances: [zeros(784)] }, 400],
  [
    '/v2/models/pair/infer',
    {
      inputs: [
        { name: 'features', shape: [1, 3], datatype: 'INT8', data: [1, 2, 300] },
        { name: 'multiplier', shape: [1, 1], datatype: 'INT32', data: [2] },
      ],
    },
    400,
  ],
  ['/v1/models/nope:predict', { instances: [SETOSA] }, 404],
  ['/v1/models/iris:predict', '{"instances": [', 400],
]

beforeAll(async () => {
  // Load every model once, so the figures compared are those of a warm isolate.
  for (const [path, body] of MIX.slice(0, 5)) await call(path, { method: 'POST', body: JSON.stringify(body) })
})

it('keeps tensors, bytes and module-scope state flat over many mixed requests', async () => {
  const total = inject('soakRequests')
  const cache = isolate().cache
  const before = { memory: tf.memory(), models: cache.list().length, bytes: cache.residentBytes() }
  const counts: Record<number, number> = {}
  for (let i = 0; i < total; i++) {
    const [path, body, status] = MIX[i % MIX.length]!
    const res = await call(path, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) })
    if (res.status !== status) throw new Error(`request ${i} to ${path}: ${res.status} ${await res.text()}`)
    await res.arrayBuffer()
    counts[status] = (counts[status] ?? 0) + 1
  }
  const after = tf.memory()
  console.log(
    `soak: ${total} requests ${JSON.stringify(counts)}; tensors ${before.memory.numTensors} → ${after.numTensors}, bytes ${before.memory.numBytes} → ${after.numBytes}`,
  )
  expect(after.numTensors).toBe(before.memory.numTensors)
  expect(after.numBytes).toBe(before.memory.numBytes)
  expect(cache.list().length).toBe(before.models)
  expect(cache.residentBytes()).toBe(before.bytes)
  expect(cache.list().every((r) => r.leases === 0)).toBe(true)
})
