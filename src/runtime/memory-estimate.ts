/**
 * @module runtime/memory-estimate — what a model will cost in memory, worked out from its artifacts
 * before anything is built or run.
 *
 * Two parts, in the bytes tf.js holds:
 * - weights: every weight's elements × its dtype's size. A uint8- or float16-quantized file is
 *   dequantized on load, so this is the float32 figure, not the file's size;
 * - activations of one inference at batch 1 (what warmup runs): the most bytes of layer outputs alive
 *   at once. tf.js layers free an intermediate once its last consumer has run, so a tensor counts from
 *   the step that makes it to the last step that reads it; model inputs and outputs count throughout.
 *
 * Layers models: each layer is instantiated from its config (which allocates nothing; weights are made
 * only when a layer is built) and asked `computeOutputShape`, along the topology's inbound nodes.
 * Graph models carry no per-node shapes: only the inputs and the declared outputs are counted, and
 * the estimate says it is partial. Kernels' scratch buffers (im2col and the like) are not counted.
 */
import * as tf from '@tensorflow/tfjs-core'
// Not re-exported by the package: the functions `loadLayersModel` itself uses to read a topology.
import { deserialize } from '@tensorflow/tfjs-layers/dist/layers/serialization'
import { convertPythonicToTs } from '@tensorflow/tfjs-layers/dist/utils/serialization_utils'
import { detectFormat } from './servable'

export interface MemoryEstimate {
  /** Bytes of weights as tf.js holds them (float32 after dequantization). */
  weightBytes: number
  /** Most bytes of activations alive at once during one inference at batch 1. */
  activationBytes: number
  /** `false` when some shapes could not be worked out: the figures are then a lower bound. */
  complete: boolean
  /** Why the estimate is partial. */
  gaps: string[]
}

type Shape = (number | null)[]

interface LayerJSON {
  class_name: string
  config: Record<string, unknown> & { name?: string; batch_input_shape?: Shape; layers?: LayerJSON[] }
  name?: string
  inbound_nodes?: unknown[]
}

const MODEL_CLASSES: ReadonlySet<string> = new Set(['Sequential', 'Model', 'Functional'])

const bytesPer = (dtype: string | undefined) =>
  dtype === 'bool' ? 1 : dtype === 'complex64' ? 8 : dtype === 'string' ? 0 : 4

/** Elements of a shape at batch 1; `undefined` when another dimension is unknown (warmup is then skipped). */
function elements(shape: Shape): number | undefined {
  let n = 1
  for (const [i, d] of shape.entries()) {
    const size = d === null || d < 0 ? (i === 0 ? 1 : undefined) : d
    if (size === undefined) return undefined
    n *= size
  }
  return n
}

/** One layer call: the tensors it reads and the ones it makes, by key. */
interface Step {
  reads: string[]
  makes: string[]
  /** Bytes a nested model holds inside the step beyond its inputs and outputs. */
  inner: number
}

/** Tensors and steps of one (sub)model, and the peak of live bytes over its steps. */
class Walk {
  readonly bytes = new Map<string, number>()
  readonly shapes = new Map<string, Shape>()
  readonly steps: Step[] = []
  readonly gaps: string[] = []

  put(key: string, shape: Shape): void {
    this.shapes.set(key, shape)
    const n = elements(shape)
    if (n === undefined) this.gaps.push(`${key} has shape [${shape.join(', ')}]`)
    this.bytes.set(key, (n ?? 0) * 4)
  }

  peak(inputs: string[], outputs: string[]): number {
    const lastUse = new Map<string, number>()
    this.steps.forEach((step, i) => step.reads.forEach((key) => lastUse.set(key, i)))
    for (const key of [...inputs, ...outputs]) lastUse.set(key, Infinity)
    const born = new Map<string, number>(inputs.map((key) => [key, -1]))
    this.steps.forEach((step, i) => step.makes.forEach((key) => born.set(key, i)))
    let peak = inputs.reduce((n, key) => n + (this.bytes.get(key) ?? 0), 0)
    this.steps.forEach((step, i) => {
      let live = step.inner
      for (const [key, from] of born) if (from <= i && (lastUse.get(key) ?? from) >= i) live += this.bytes.get(key) ?? 0
      peak = Math.max(peak, live)
    })
    return peak
  }
}

/** Output shapes of one layer applied to `inputs`, from its config alone. */
function layerOutputs(layer: LayerJSON, inputs: Shape[]): Shape[] {
  const instance = deserialize(
    convertPythonicToTs(layer as unknown as Parameters<typeof convertPythonicToTs>[0]) as tf.serialization.ConfigDict,
  ) as unknown as {
    computeOutputShape(shape: Shape | Shape[]): Shape | Shape[]
  }
  const out = instance.computeOutputShape(inputs.length === 1 ? inputs[0]! : inputs)
  return Array.isArray(out[0]) ? (out as Shape[]) : [out as Shape]
}

interface SubModel {
  outputs: Shape[]
  peak: number
  gaps: string[]
}

/** A Sequential model: each layer reads the one before. */
function walkSequential(config: LayerJSON['config'] | LayerJSON[], given?: Shape[]): SubModel {
  const layers = Array.isArray(config) ? config : (config.layers ?? [])
  const walk = new Walk()
  let current = 'input'
  const first = layers[0]?.config
  const declared =
    given?.[0] ?? first?.batch_input_shape ?? (first as { batchInputShape?: Shape } | undefined)?.batchInputShape
  if (!declared) return { outputs: [], peak: 0, gaps: ['the first layer declares no input shape'] }
  walk.put(current, declared)
  for (const [i, layer] of layers.entries()) {
    if (layer.class_name === 'InputLayer') continue
    const next = `${layer.config.name ?? i}:0`
    const made = callLayer(walk, layer, [current], [next])
    if (!made) break
    current = next
  }
  return { outputs: [walk.shapes.get(current)!], peak: walk.peak(['input'], [current]), gaps: walk.gaps }
}

/** A functional model: layers called on the tensors their inbound nodes name. */
function walkFunctional(config: LayerJSON['config'], given?: Shape[]): SubModel {
  const layers = (config.layers ?? []) as LayerJSON[]
  const refs = (list: unknown) => (Array.isArray(list) ? (list as [string, number, number][]) : [])
  const key = ([name, node, index]: [string, number, number]) => `${name}:${node}:${index}`
  const inputs = refs(config.input_layers).map(key)
  const outputs = refs(config.output_layers).map(key)
  const walk = new Walk()
  for (const [i, ref] of refs(config.input_layers).entries()) {
    const layer = layers.find((l) => (l.name ?? l.config.name) === ref[0])
    const shape = given?.[i] ?? layer?.config.batch_input_shape
    if (!shape) return { outputs: [], peak: 0, gaps: [`input ${ref[0]} declares no shape`] }
    walk.put(key(ref), shape)
  }
  // Calls in an order where every input is known: Keras writes layers in that order, but nothing
  // obliges a file to, so sweep until no call can be made.
  const pending = layers.flatMap((layer) =>
    layer.class_name === 'InputLayer'
      ? []
      : ((layer.inbound_nodes ?? []) as unknown[]).map((node, n) => ({ layer, node: refs(node), n })),
  )
  for (let progress = true; progress && pending.length > 0;) {
    progress = false
    for (let p = 0; p < pending.length; p++) {
      const { layer, node, n } = pending[p]!
      const reads = node.map(key)
      if (!reads.every((r) => walk.shapes.has(r))) continue
      pending.splice(p--, 1)
      const name = layer.name ?? layer.config.name!
      if (!callLayer(walk, layer, reads, (count) => Array.from({ length: count }, (_, k) => `${name}:${n}:${k}`)))
        return result()
      progress = true
    }
  }
  if (pending.length > 0) walk.gaps.push(`${pending.length} layer calls whose inputs never appear`)
  return result()

  function result(): SubModel {
    return {
      outputs: outputs.flatMap((o) => (walk.shapes.has(o) ? [walk.shapes.get(o)!] : [])),
      peak: walk.peak(
        inputs,
        outputs.filter((o) => walk.shapes.has(o)),
      ),
      gaps: walk.gaps,
    }
  }
}

/** Records one call of `layer`; false (with the reason in the gaps) when its output shape cannot be worked out. */
function callLayer(
  walk: Walk,
  layer: LayerJSON,
  reads: string[],
  makes: string[] | ((count: number) => string[]),
): boolean {
  const inputs = reads.map((r) => walk.shapes.get(r)!)
  let outputs: Shape[]
  let inner = 0
  try {
    if (MODEL_CLASSES.has(layer.class_name)) {
      const sub = walkModel(layer, inputs)
      walk.gaps.push(...sub.gaps)
      outputs = sub.outputs
      inner = sub.peak
    } else {
      outputs = layerOutputs(layer, inputs)
    }
  } catch (error) {
    walk.gaps.push(`layer ${layer.config.name ?? layer.class_name}: ${(error as Error).message}`)
    return false
  }
  const keys = typeof makes === 'function' ? makes(outputs.length) : makes
  outputs.forEach((shape, i) => walk.put(keys[i]!, shape))
  if (inner > 0) inner -= [...reads, ...keys].reduce((n, k) => n + (walk.bytes.get(k) ?? 0), 0)
  walk.steps.push({ reads, makes: keys, inner: Math.max(0, inner) })
  return true
}

function walkModel(model: LayerJSON, given?: Shape[]): SubModel {
  return model.class_name === 'Sequential' ? walkSequential(model.config, given) : walkFunctional(model.config, given)
}

function graphActivations(artifacts: tf.io.ModelArtifacts): SubModel {
  // Only what the signature declares: a graph's nodes carry no shapes.
  const signature = (artifacts.signature ?? {}) as Record<
    string,
    Record<string, { tensorShape?: { dim?: { size?: string | number }[] } }> | undefined
  >
  const walk = new Walk()
  const keys: string[] = []
  for (const side of ['inputs', 'outputs']) {
    for (const [name, info] of Object.entries(signature[side] ?? {})) {
      const dims = info.tensorShape?.dim
      if (!dims) continue
      walk.put(
        `${side}/${name}`,
        dims.map((d) => Number(d.size ?? -1)),
      )
      keys.push(`${side}/${name}`)
    }
  }
  return {
    outputs: [],
    peak: walk.peak(keys, []),
    gaps: ['a graph model: only its declared inputs and outputs are counted', ...walk.gaps],
  }
}

/** Estimates the memory one model needs to be held and warmed up, from its artifacts alone. */
export function estimateMemory(artifacts: tf.io.ModelArtifacts): MemoryEstimate {
  const weightBytes = (artifacts.weightSpecs ?? []).reduce(
    (n, spec) => n + spec.shape.reduce((a, b) => a * b, 1) * bytesPer(spec.dtype),
    0,
  )
  let activations: SubModel
  if (detectFormat(artifacts) === 'graph-model') {
    activations = graphActivations(artifacts)
  } else {
    const topology = artifacts.modelTopology as { model_config?: LayerJSON } & LayerJSON
    const model = topology.model_config ?? topology
    activations = model?.class_name ? walkModel(model) : { outputs: [], peak: 0, gaps: ['no model topology'] }
  }
  return {
    weightBytes,
    activationBytes: activations.peak,
    complete: activations.gaps.length === 0,
    gaps: activations.gaps,
  }
}

/** Bytes for people: `524 B`, `215 kB`, `51 MB`, `4.3 GB` (two significant digits at least). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB']
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit++
  }
  return `${unit === 0 || value >= 10 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`
}
