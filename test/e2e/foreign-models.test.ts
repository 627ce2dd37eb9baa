/**
 * Acceptance: "A graph model and a layers model that no one wrote for this project, dropped into
 * model-assets/, are served with correct metadata and predictions equal to tf.js run directly."
 *
 * The shared fixture server's repository (test/e2e/support/fixture-repo.ts) holds a copy of model-assets/ plus
 * models that npm packages ship, served as they come:
 *  - foreign-liveness: @vladmandic/human models/liveness.json, a graph model with a signature block
 *  - foreign-emotion:  @vladmandic/human models/emotion.json, a graph model without one
 *  - upscaler-2x:      @upscalerjs/default-model models/model.json, a Keras functional layers model
 *                      whose input has unknown height and width
 * the deploy bundle in workerd (Miniflare) serves it; each model's metadata and predictions are
 * compared with what tf.js reports and computes in this process from the same files.
 */
import { basename, dirname, join } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import * as tfconv from '@tensorflow/tfjs-converter'
import * as tfl from '@tensorflow/tfjs-layers'
import { beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs module without type declarations
import { artifactsOf } from '../../scripts/build/memory/artifacts.mjs'
import { random as prng } from '../support/random'
import { get, post, SETOSA } from './support/http'
import { FOREIGN } from './support/fixture-repo'
import type { Foreign } from './support/fixture-repo'
import { ROOT, sharedFixtureServer } from './support/servers'
import type { SharedServer } from './support/servers'

const BATCH = 2

interface TensorInfo {
  dtype: string
  tensor_shape: { dim: { size: string; name: string }[]; unknown_rank: boolean }
  name: string
}
interface SignatureDef {
  inputs: Record<string, TensorInfo>
  outputs: Record<string, TensorInfo>
  method_name: string
}
interface Metadata {
  model_spec: { name: string; signature_name: string; version: string }
  metadata: { signature_def: { signature_def: Record<string, SignatureDef> } }
}
interface SignatureBlockEntry {
  name: string
  dtype: string
  tensorShape: { dim: { size: string }[] }
}

/** What a spec ought to say about one tensor: the name clients use, its dtype and dims. */
interface Expected {
  name: string
  dtype: string
  dims: string[]
}

const TF_DTYPE: Record<string, string> = {
  float32: 'DT_FLOAT',
  int32: 'DT_INT32',
  bool: 'DT_BOOL',
  string: 'DT_STRING',
}
const dims = (shape: readonly (number | null)[]) => shape.map((d) => String(d ?? -1))

/** Nested arrays of the given shape, values in [low, high) on a 1/256 grid (exact in float32 and in JSON). */
function randomNested(shape: readonly number[], [low, high]: readonly [number, number], next: () => number): unknown {
  const [size, ...rest] = shape
  if (size === undefined) return low + Math.floor(next() * (high - low) * 256) / 256
  return Array.from({ length: size }, () => randomNested(rest, [low, high], next))
}

function shapeOf(value: unknown): number[] {
  const shape: number[] = []
  for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length)
  return shape
}

/** Compares nested numeric arrays: same shape, each |a−b| ≤ 1e-5 or ≤ 1e-4·|b|. Returns the problems found. */
function compareNested(got: unknown, want: unknown): string[] {
  const problems: string[] = []
  if (JSON.stringify(shapeOf(got)) !== JSON.stringify(shapeOf(want))) {
    return [`shape ${JSON.stringify(shapeOf(got))} differs from tf.js's ${JSON.stringify(shapeOf(want))}`]
  }
  const walk = (g: unknown, w: unknown, path: string) => {
    if (Array.isArray(w)) {
      ;(w as unknown[]).forEach((wi, i) => walk((g as unknown[])[i], wi, `${path}[${i}]`))
      return
    }
    if (typeof g !== 'number' || typeof w !== 'number') {
      problems.push(`${path}: got ${JSON.stringify(g)}, tf.js ${JSON.stringify(w)}`)
      return
    }
    const diff = Math.abs(g - w)
    if (!(diff <= 1e-5 || diff <= 1e-4 * Math.abs(w))) problems.push(`${path}: got ${g}, tf.js ${w} (|diff| ${diff})`)
  }
  walk(got, want, '')
  return problems
}

interface Reference {
  inputs: Expected[]
  outputs: Expected[]
  /** The model.json signature block's tensor names, keyed by signature key (graph models that have one). */
  tensorNames: Record<string, string>
  /** The test input (batch of BATCH) and tf.js's output for it, as nested arrays. */
  input: unknown
  output: unknown
}

/** Loads the model with tf.js in this process and asks it what a metadata request ought to say and what predict ought to return. */
async function reference(model: Foreign, modelJsonPath: string, seed: number): Promise<Reference> {
  const artifacts = artifactsOf(dirname(modelJsonPath), basename(modelJsonPath)) as tf.io.ModelArtifacts
  const input = randomNested([BATCH, ...model.rowShape], model.range, prng(seed))
  const x = tf.tensor(input as number[], [BATCH, ...model.rowShape], 'float32')
  try {
    if (model.format === 'graph-model') {
      const graph = await tfconv.loadGraphModel(tf.io.fromMemory(artifacts))
      try {
        const y = graph.predict(x) as tf.Tensor
        const output = await y.array()
        const outputDtype = y.dtype
        const outputShape = [-1, ...y.shape.slice(1)]
        y.dispose()
        const signature = artifacts.signature as
          { inputs?: Record<string, SignatureBlockEntry>; outputs?: Record<string, SignatureBlockEntry> } | undefined
        const tensorNames = Object.fromEntries(
          [...Object.entries(signature?.inputs ?? {}), ...Object.entries(signature?.outputs ?? {})].map(
            ([key, info]) => [key, info.name],
          ),
        )
        return {
          inputs: graph.inputs.map((info, i) => ({
            name: graph.inputNodes[i]!,
            dtype: TF_DTYPE[info.dtype!]!,
            dims: dims(info.shape!),
          })),
          // tf.js knows a graph's output shapes only by running it (or from a signature block).
          outputs: graph.outputNodes.map((name) => ({ name, dtype: TF_DTYPE[outputDtype]!, dims: dims(outputShape) })),
          tensorNames,
          input,
          output,
        }
      } finally {
        graph.dispose()
      }
    }
    const layers = await tfl.loadLayersModel(tf.io.fromMemory(artifacts))
    try {
      const y = layers.predict(x) as tf.Tensor
      const output = await y.array()
      y.dispose()
      const spec = (t: tfl.SymbolicTensor): Expected => ({
        name: t.sourceLayer.name,
        dtype: TF_DTYPE[t.dtype]!,
        dims: dims(t.shape),
      })
      return { inputs: layers.inputs.map(spec), outputs: layers.outputs.map(spec), tensorNames: {}, input, output }
    } finally {
      layers.dispose()
    }
  } finally {
    x.dispose()
  }
}

const describeSpecs = (group: Record<string, TensorInfo>): Expected[] =>
  Object.entries(group).map(([name, info]) => ({
    name,
    dtype: info.dtype,
    dims: info.tensor_shape.dim.map((d) => d.size),
  }))

let server: SharedServer | undefined
const references = new Map<string, Reference>()
const url = (path: string) => `${server!.url}${path}`

beforeAll(async () => {
  await tf.setBackend('cpu')
  await tf.ready()
  for (const [i, model] of FOREIGN.entries())
    references.set(model.name, await reference(model, join(ROOT, 'node_modules', model.source), 1000 + i))
})

// A hook of its own, so the broker's deadline (and its report of wrangler's output) comes within the hook's.
beforeAll(async () => {
  server = await sharedFixtureServer()
})

describe.each(FOREIGN)('$name ($format from $source)', (model) => {
  it('is AVAILABLE', async () => {
    const res = await get(url(`/v1/models/${model.name}`))
    expect(res.status, res.text).toBe(200)
    expect(res.json).toEqual({
      model_version_status: [{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }],
    })
  })

  it('metadata lists the inputs and outputs tf.js reports', async () => {
    const ref = references.get(model.name)!
    const res = await get<Metadata>(url(`/v1/models/${model.name}/metadata`))
    expect(res.status, res.text).toBe(200)
    expect(res.json.model_spec).toEqual({ name: model.name, signature_name: '', version: '1' })
    const def = res.json.metadata.signature_def.signature_def.serving_default
    expect(def, res.text).toBeDefined()
    expect(def!.method_name).toBe('tensorflow/serving/predict')
    expect(describeSpecs(def!.inputs)).toEqual(ref.inputs)
    expect(describeSpecs(def!.outputs)).toEqual(ref.outputs)
    for (const info of [...Object.values(def!.inputs), ...Object.values(def!.outputs)])
      expect(info.tensor_shape.unknown_rank).toBe(false)
    // Where model.json has a signature block, the graph tensors behind its keys are the block's.
    for (const [key, tensorName] of Object.entries(ref.tensorNames)) {
      expect((def!.inputs[key] ?? def!.outputs[key])?.name, `tensor behind '${key}'`).toBe(tensorName)
    }
  })

  it('predict (row format) equals tf.js run directly on the same input', async () => {
    const ref = references.get(model.name)!
    const res = await post<{ predictions: unknown }>(url(`/v1/models/${model.name}:predict`), { instances: ref.input })
    expect(res.status, res.text.slice(0, 500)).toBe(200)
    expect(res.headers.get('x-model-version')).toBe('1')
    // One output: `predictions` is the bare per-row list.
    expect(compareNested(res.json.predictions, ref.output).slice(0, 10)).toEqual([])
  })

  it('predict (columnar format, input named as the metadata names it) equals tf.js run directly', async () => {
    const ref = references.get(model.name)!
    const res = await post<{ outputs: unknown }>(url(`/v1/models/${model.name}:predict`), {
      inputs: { [ref.inputs[0]!.name]: ref.input },
    })
    expect(res.status, res.text.slice(0, 500)).toBe(200)
    expect(compareNested(res.json.outputs, ref.output).slice(0, 10)).toEqual([])
  })

  it('Open Inference Protocol: GET /v2/models/{m} shows the true inputs and outputs', async () => {
    const ref = references.get(model.name)!
    const res = await get<{ name: string; inputs: unknown[]; outputs: unknown[] }>(url(`/v2/models/${model.name}`))
    expect(res.status, res.text).toBe(200)
    const v2 = (t: Expected) => ({
      name: t.name,
      datatype: { DT_FLOAT: 'FP32', DT_INT32: 'INT32', DT_BOOL: 'BOOL' }[t.dtype],
      shape: t.dims.map(Number),
    })
    expect(res.json.inputs).toEqual(ref.inputs.map(v2))
    expect(res.json.outputs).toEqual(ref.outputs.map(v2))
  })

  it('Open Inference Protocol: POST …/infer with flat data equals tf.js run directly', async () => {
    const ref = references.get(model.name)!
    const shape = [BATCH, ...model.rowShape]
    const res = await post<{ outputs: { name: string; shape: number[]; data: number[] }[] }>(
      url(`/v2/models/${model.name}/infer`),
      {
        inputs: [{ name: ref.inputs[0]!.name, shape, datatype: 'FP32', data: (ref.input as unknown[]).flat(Infinity) }],
      },
    )
    expect(res.status, res.text.slice(0, 500)).toBe(200)
    const [out] = res.json.outputs
    expect(out!.name).toBe(ref.outputs[0]!.name)
    expect(out!.shape).toEqual(shapeOf(ref.output))
    expect(compareNested(out!.data, (ref.output as unknown[]).flat(Infinity)).slice(0, 10)).toEqual([])
  })
})

describe('the bundled models beside them', () => {
  it('iris is still served from the same repository', async () => {
    const res = await post<{ predictions: number[][] }>(url('/v1/models/iris:predict'), { instances: [SETOSA] })
    expect(res.status, res.text).toBe(200)
    expect(res.json.predictions[0]).toHaveLength(3)
  })
})
