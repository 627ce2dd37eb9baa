// Every fixture and bundled model answers, through both protocols, what tf.js run directly
// on the same input answers.
import { env } from 'cloudflare:workers'
import { loadGraphModel } from '@tensorflow/tfjs-converter'
import { loadLayersModel } from '@tensorflow/tfjs-layers'
import { beforeAll, describe, expect, it } from 'vitest'
import { storeHandler } from '../src/repository/model-files'
import { assetsStore } from '../src/repository/stores'
import { tf } from '../src/runtime/tf'
import { call, post } from './support/helpers'
import { random } from './support/random'
import { isolate } from '../src/isolate'

// Models here are built directly, not through the isolate: start its backend as a load would.
beforeAll(() => isolate().backend.ensure())

interface Case {
  model: string
  /** Input name → [shape, dtype] for a batch of two. */
  inputs: Record<string, [number[], 'float32' | 'int32']>
}

const CASES: Case[] = [
  { model: 'iris', inputs: { features: [[2, 4], 'float32'] } },
  { model: 'digits', inputs: { image: [[2, 28, 28, 1], 'float32'] } },
  { model: 'pair', inputs: { features: [[2, 3], 'float32'], multiplier: [[2, 1], 'int32'] } },
  { model: 'pair-nosig', inputs: { x: [[2, 3], 'float32'], k: [[2, 1], 'int32'] } },
  { model: 'positives', inputs: { x: [[2, 5], 'float32'] } },
  { model: 'flower', inputs: { sepal: [[2, 2], 'float32'], petal: [[2, 2], 'float32'] } },
]

function makeInputs(c: Case, seed: number) {
  const next = random(seed)
  return Object.fromEntries(
    Object.entries(c.inputs).map(([name, [shape, dtype]]) => {
      const n = shape.reduce((a, b) => a * b, 1)
      const flat = Array.from({ length: n }, () =>
        dtype === 'int32' ? Math.floor(next() * 10) - 3 : Math.fround(next() * 2 - 0.5),
      )
      return [name, { shape, dtype, flat }]
    }),
  )
}

/** Runs the model with tf.js directly, outside the Worker. */
async function direct(
  model: string,
  inputs: ReturnType<typeof makeInputs>,
): Promise<Record<string, { shape: number[]; data: number[] }>> {
  const artifacts = await storeHandler(assetsStore(env.ASSETS), `${model}/1`).load()
  const feeds = Object.fromEntries(
    Object.entries(inputs).map(([name, i]) => [name, tf.tensor(i.flat, i.shape, i.dtype)]),
  )
  let named: Record<string, tf.Tensor>
  let dispose: () => void
  if (artifacts.format === 'graph-model') {
    const graph = await loadGraphModel(tf.io.fromMemory(artifacts))
    const out = await graph.executeAsync(feeds, graph.outputNodes)
    const list = Array.isArray(out) ? out : [out]
    named = Object.fromEntries(graph.outputNodes.map((n, i) => [n, list[i]!]))
    dispose = () => graph.dispose()
  } else {
    const layers = await loadLayersModel(tf.io.fromMemory(artifacts))
    const out = layers.predict(layers.inputs.map((t) => feeds[t.sourceLayer.name]!))
    const list = Array.isArray(out) ? out : [out]
    named = Object.fromEntries(layers.outputs.map((t, i) => [t.sourceLayer.name, list[i]!]))
    dispose = () => layers.dispose()
  }
  const result = Object.fromEntries(
    await Promise.all(
      Object.entries(named).map(async ([n, t]) => [n, { shape: t.shape, data: Array.from(await t.data()) }]),
    ),
  )
  tf.dispose([feeds, named])
  dispose()
  return result
}

const nest = (flat: number[], shape: number[]): unknown =>
  shape.length <= 1
    ? flat
    : Array.from({ length: shape[0]! }, (_, i) =>
        nest(flat.slice((i * flat.length) / shape[0]!, ((i + 1) * flat.length) / shape[0]!), shape.slice(1)),
      )

const flatOf = (v: unknown): number[] => (Array.isArray(v) ? v.flatMap(flatOf) : [Number(v)])

function expectClose(actual: number[], expected: number[]) {
  expect(actual).toHaveLength(expected.length)
  actual.forEach((a, i) => expect(Math.abs(a - expected[i]!)).toBeLessThanOrEqual(1e-6))
}

describe.each(CASES)('$model', (c) => {
  const inputs = makeInputs(c, 42)
  let expected: Awaited<ReturnType<typeof direct>>
  beforeAll(async () => {
    expected = await direct(c.model, inputs)
  })

  it('Open Inference Protocol /infer equals tf.js run directly', async () => {
    const res = await post(`/v2/models/${c.model}/infer`, {
      id: 'eq-1',
      inputs: Object.entries(inputs).map(([name, i]) => ({
        name,
        shape: i.shape,
        datatype: i.dtype === 'int32' ? 'INT32' : 'FP32',
        data: i.flat,
      })),
    })
    expect(res.status).toBe(200)
    const body = await res.json<{ id: string; outputs: { name: string; shape: number[]; data: number[] }[] }>()
    expect(body.id).toBe('eq-1')
    expect(body.outputs.map((o) => o.name).sort()).toEqual(Object.keys(expected).sort())
    for (const out of body.outputs) {
      expect(out.shape).toEqual(expected[out.name]!.shape)
      expectClose(out.data, expected[out.name]!.data)
    }
  })

  it('TF Serving columnar :predict equals tf.js run directly', async () => {
    const res = await post(`/v1/models/${c.model}:predict`, {
      inputs: Object.fromEntries(Object.entries(inputs).map(([name, i]) => [name, nest(i.flat, i.shape)])),
    })
    expect(res.status).toBe(200)
    const { outputs } = await res.json<{ outputs: unknown }>()
    const names = Object.keys(expected)
    const byName = names.length === 1 ? { [names[0]!]: outputs } : (outputs as Record<string, unknown>)
    for (const name of names) expectClose(flatOf(byName[name]), expected[name]!.data)
  })

  it('both protocols show the same signature', async () => {
    const v2 = await (await call(`/v2/models/${c.model}`)).json<any>()
    const v1 = await (await call(`/v1/models/${c.model}/metadata`)).json<any>()
    const def = v1.metadata.signature_def.signature_def.serving_default
    const fromV1 = (side: Record<string, any>) =>
      Object.entries(side).map(([name, t]) => ({
        name,
        dtype: t.dtype,
        shape: t.tensor_shape.unknown_rank ? null : t.tensor_shape.dim.map((d: any) => Number(d.size)),
      }))
    const fromV2 = (side: any[]) =>
      side.map((t) => ({
        name: t.name,
        dtype: { FP32: 'DT_FLOAT', INT32: 'DT_INT32', BOOL: 'DT_BOOL', BYTES: 'DT_STRING' }[t.datatype as string],
        shape: t.shape,
      }))
    expect(fromV2(v2.inputs)).toEqual(fromV1(def.inputs).map((t) => ({ ...t, shape: t.shape ?? [-1] })))
    expect(fromV2(v2.outputs)).toEqual(fromV1(def.outputs).map((t) => ({ ...t, shape: t.shape ?? [-1] })))
    expect(v2.inputs.map((t: any) => t.name).sort()).toEqual(Object.keys(c.inputs).sort())
  })
})
