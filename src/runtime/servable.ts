/** @module runtime/servable — builds a tf.js layers or graph model into one interface, warmed up and ready to run. */
import { loadGraphModel } from '@tensorflow/tfjs-converter'
import type { GraphModel } from '@tensorflow/tfjs-converter'
import { loadLayersModel } from '@tensorflow/tfjs-layers'
import type { LayersModel } from '@tensorflow/tfjs-layers'
import type { BatchingStatus } from './batching-status'
import { fitRows, KERNEL_FACTOR, profiled, wasmHeapBytes } from './footprint'
import type { Footprint } from './footprint'
import { dtypeFromTensorFlow } from './signature'
import type { DType, Signature, TensorSpec } from './signature'
import { tf } from './tf'

export type ModelFormat = 'layers-model' | 'graph-model'

/** A built model: the only way routes run inference. */
export interface Servable {
  readonly format: ModelFormat
  readonly signature: Signature
  /** Bytes of weight data as stored (the files' shards). */
  readonly weightBytes: number
  /** What it costs in memory, measured at build and warmup: the figures the cache's budget counts. */
  readonly footprint: Footprint
  /** How it merges concurrent requests, when it was made by `withBatching`. */
  readonly batching?: BatchingStatus
  /**
   * Runs the model on inputs keyed by signature name and returns every output by name.
   * Inputs stay owned by the caller; the caller disposes the outputs.
   */
  run(inputs: Record<string, tf.Tensor>): Promise<Record<string, tf.Tensor>>
  dispose(): void
}

/**
 * The one way to wrap a servable: `run` replaced (and `dispose` or `batching` when given), everything
 * else read from `servable` itself — its signature object, which warmup may refine, its footprint —
 * so a wrapper never holds a stale copy. The batcher, the cache's memory admission and the shadow
 * run's capture each wrap this way, and wrap one another.
 */
export function wrapRun(servable: Servable, run: Servable['run'], own: Partial<Pick<Servable, 'dispose' | 'batching'>> = {}): Servable {
  const props: PropertyDescriptorMap = { run: { value: run, enumerable: true } }
  for (const [key, value] of Object.entries(own)) props[key] = { value, enumerable: true }
  return Object.create(servable, props) as Servable
}

export type BuildTimings = {
  buildMs: number
  warmupMs: number
  /** Of warmupMs: the profiled batch-1 run (the first run, so it also pays the kernels' set-up). */
  warmup1Ms?: number
  /** Of warmupMs: the profiled batch-2 run that gives each further row's bytes (absent for a fixed batch). */
  warmup2Ms?: number
}

/** Tells a graph model from a layers model by its artifacts, as tf.js's own loaders do. */
export function detectFormat(artifacts: tf.io.ModelArtifacts): ModelFormat {
  if (artifacts.format === 'graph-model' || artifacts.format === 'layers-model') return artifacts.format
  const topology = artifacts.modelTopology as Record<string, unknown> | undefined
  if (topology && Array.isArray(topology.node)) return 'graph-model'
  return 'layers-model'
}

function weightBytesOf(artifacts: tf.io.ModelArtifacts): number {
  const data = artifacts.weightData
  if (data === undefined) return 0
  return Array.isArray(data) ? data.reduce((sum, b) => sum + b.byteLength, 0) : data.byteLength
}

/** A servable of either format: its signature, its bytes, and the format's own way to run. */
function servableOf(format: ModelFormat, model: { dispose(): void }, signature: Signature, weightBytes: number, footprint: Footprint, run: Servable['run']): Servable {
  return { format, signature, weightBytes, footprint, run, dispose: () => model.dispose() }
}

function layersServable(model: LayersModel, weightBytes: number, footprint: Footprint): Servable {
  // Named after their layers, as Keras names a signature's keys. (A Sequential model loaded from
  // JSON leaves inputNames/outputNames empty until it is built, so they cannot be relied on.)
  const spec = (t: LayersModel['inputs'][number]): TensorSpec => ({
    name: t.sourceLayer.name,
    tensorName: t.name,
    dtype: t.dtype as DType,
    shape: t.shape.map((d) => d ?? -1),
  })
  const inputs = model.inputs.map(spec)
  const outputs = model.outputs.map(spec)
  return servableOf('layers-model', model, { inputs, outputs }, weightBytes, footprint, async (feeds) => {
    const xs = inputs.map((s) => feeds[s.name]!)
    // predictOnBatch runs the whole batch at once; predict() would split it into chunks of 32.
    const ys = tf.tidy(() => model.predictOnBatch(xs.length === 1 ? xs[0]! : xs))
    const list = Array.isArray(ys) ? ys : [ys]
    return Object.fromEntries(outputs.map((s, i) => [s.name, list[i]!]))
  })
}

interface SignatureTensorJSON {
  name?: string
  dtype?: string
  tensorShape?: { dim?: { size?: string | number }[]; unknownRank?: boolean }
}

interface GraphNodeJSON {
  name: string
  attr?: Record<string, { type?: string }>
}

function shapeFromSignature(info: SignatureTensorJSON | undefined): number[] | null | undefined {
  const shape = info?.tensorShape
  if (!shape) return undefined
  if (shape.unknownRank) return null
  return (shape.dim ?? []).map((d) => Number(d.size ?? -1))
}

function graphServable(model: GraphModel, artifacts: tf.io.ModelArtifacts, weightBytes: number, footprint: Footprint): Servable {
  const declared = (artifacts.signature ?? {}) as {
    inputs?: Record<string, SignatureTensorJSON>
    outputs?: Record<string, SignatureTensorJSON>
  }
  // A graph without a signature block falls back to its placeholders and its output nodes.
  const inputs = model.inputs.map((info, i): TensorSpec => {
    const name = model.inputNodes[i]!
    const sig = declared.inputs?.[name]
    return {
      name,
      tensorName: sig?.name ?? `${info.name}:0`,
      dtype: dtypeFromTensorFlow(sig?.dtype) ?? (info.dtype as DType | undefined) ?? 'float32',
      shape: shapeFromSignature(sig) ?? info.shape ?? null,
    }
  })
  // Without a signature, an output's dtype is the attribute of the node that produces it, and its
  // shape is known only once warmup (or a request) has run it.
  const nodes = new Map(((artifacts.modelTopology as { node?: GraphNodeJSON[] }).node ?? []).map((n) => [n.name, n]))
  const outputs = model.outputNodes.map((name): TensorSpec => {
    const sig = declared.outputs?.[name]
    const attr = nodes.get(name.split(':')[0]!)?.attr ?? {}
    const nodeType = attr.T?.type ?? attr.dtype?.type ?? attr.DstT?.type ?? attr.out_type?.type
    return {
      name,
      tensorName: sig?.name ?? (name.includes(':') ? name : `${name}:0`),
      dtype: dtypeFromTensorFlow(sig?.dtype) ?? dtypeFromTensorFlow(nodeType) ?? 'float32',
      shape: shapeFromSignature(sig) ?? null,
    }
  })
  // Graphs with control flow or dynamic shapes only run through executeAsync; find out on first use.
  let isAsync = false
  const names = outputs.map((o) => o.name)
  return servableOf('graph-model', model, { inputs, outputs }, weightBytes, footprint, async (feeds) => {
    let result: tf.Tensor | tf.Tensor[] | undefined
    if (!isAsync) {
      try {
        result = tf.tidy(() => model.execute({ ...feeds }, names))
      } catch (error) {
        if (!/executeAsync/.test(String(error))) throw error
        isAsync = true
      }
    }
    result ??= await model.executeAsync({ ...feeds }, names)
    const list = Array.isArray(result) ? result : [result]
    return Object.fromEntries(names.map((name, i) => [name, list[i]!]))
  })
}

/** Zeros in the input's shape with a batch of `rows`, or `undefined` when a dimension cannot be guessed. */
function warmupInput(spec: TensorSpec, rows: number): tf.Tensor | undefined {
  if (spec.shape === null || spec.dtype === 'string' || spec.dtype === 'complex64') return undefined
  const shape = spec.shape.map((d, i) => (d === -1 && i === 0 ? rows : d))
  if (shape.some((d) => d < 0)) return undefined
  return tf.zeros(shape, spec.dtype)
}

/** Profiles one run on zeros of `rows` rows: its peak activation bytes and outputs (or undefined: an input has unknown dimensions). */
async function runZeros(servable: Servable, rows: number): Promise<{ outputs: Record<string, tf.Tensor>; peakBytes: number } | undefined> {
  const feeds: Record<string, tf.Tensor> = {}
  try {
    for (const spec of servable.signature.inputs) {
      const x = warmupInput(spec, rows)
      if (!x) return undefined
      feeds[spec.name] = x
    }
    return await profiled(servable, feeds)
  } finally {
    tf.dispose(feeds)
  }
}

/**
 * Runs one inference on zeros so the first real request pays no kernel set-up, and fills in
 * output shapes and dtypes the artifacts did not declare. Measures the activations on batch 1 and,
 * when the batch is dynamic, on batch 2 (see runtime/footprint.ts). Returns false when it had to skip
 * because an input has dimensions only a real request can tell.
 */
async function warmup(servable: Servable, footprint: Footprint, timings: Partial<BuildTimings>, measured?: MeasuredActivations): Promise<boolean> {
  let started = Date.now()
  const one = await runZeros(servable, 1)
  if (!one) return false
  timings.warmup1Ms = Date.now() - started
  const batchIsDynamic = servable.signature.inputs.every((s) => s.shape?.[0] === -1)
  for (const spec of servable.signature.outputs) {
    const y = one.outputs[spec.name]
    if (!y) continue
    if (spec.shape === null || spec.shape.length !== y.shape.length) {
      spec.shape = y.shape.map((d, i) => (i === 0 && batchIsDynamic ? -1 : d))
    }
    spec.dtype = y.dtype as DType
  }
  tf.dispose(one.outputs)
  if (measured) {
    // The version's figures were measured outside the isolate: the batch-2 profiling run is not
    // needed before the first answer. They are never allowed to count one row for less than the
    // batch-1 run just measured here (a figure from another runtime could be low).
    const seen = fitRows(one.peakBytes).rowBytes
    const oneRow = measured.activationBytes + measured.rowBytes
    Object.assign(footprint, { activationBytes: measured.activationBytes + Math.max(0, seen - oneRow), rowBytes: measured.rowBytes, measured: 'index' })
    return true
  }
  let peak2: number | undefined
  if (batchIsDynamic) {
    started = Date.now()
    const two = await runZeros(servable, 2)
    timings.warmup2Ms = Date.now() - started
    tf.dispose(two?.outputs ?? {})
    peak2 = two?.peakBytes
  }
  Object.assign(footprint, fitRows(one.peakBytes, peak2), { measured: peak2 === undefined ? 'warmup-1' : 'warmup-1-2' })
  return true
}

/**
 * A version's activation figures measured once, outside the isolate (the index's `memory` entry,
 * heap bytes; the caller has checked its digest against the files it loaded).
 */
export type MeasuredActivations = { activationBytes: number; rowBytes: number }

/**
 * Builds artifacts into a servable model on the active backend (the caller has chosen it) and warms
 * it up. Any failure disposes what was built, so a half-built model never lingers in memory. With
 * `measured`, the warmup runs batch 1 only (kernel set-up, output shapes, a floor for one row)
 * and takes the per-row figures from it, which takes the batch-2 profiling run off the first request.
 */
export async function buildServable(
  source: tf.io.ModelArtifacts,
  options: { measured?: MeasuredActivations } = {},
): Promise<{ servable: Servable; timings: BuildTimings; warmedUp: boolean }> {
  const started = Date.now()
  const weightBytes = weightBytesOf(source)
  const heapBefore = wasmHeapBytes()
  const tensorBytesBefore = tf.memory().numBytes
  // Our own copy: a GraphModel keeps its handler, and with it these artifacts, as long as it lives.
  const artifacts = { ...source }
  const handler = tf.io.fromMemory(artifacts)
  const format = detectFormat(artifacts)
  const model = format === 'graph-model' ? await loadGraphModel(handler) : await loadLayersModel(handler)
  // The backend holds the weights now: the fetched shards go before warmup, so a load does not hold
  // them twice for longer than it must (a caller that keeps `source` keeps them, so the isolate does not).
  artifacts.weightData = undefined
  source = artifacts
  const held = tf.memory().numBytes - tensorBytesBefore
  const footprint: Footprint = {
    weightBytes: held,
    kernelBytes: tf.getBackend() === 'wasm' ? KERNEL_FACTOR * held : 0,
    activationBytes: 0,
    rowBytes: 0,
    measured: 'pending',
    heapGrowthBytes: 0,
  }
  const servable =
    format === 'graph-model'
      ? graphServable(model as GraphModel, artifacts, weightBytes, footprint)
      : layersServable(model as LayersModel, weightBytes, footprint)
  const built = Date.now()
  try {
    const stages: Partial<BuildTimings> = {}
    const warmedUp = await warmup(servable, footprint, stages, options.measured)
    footprint.heapGrowthBytes = (wasmHeapBytes() ?? 0) - (heapBefore ?? 0)
    return { servable, warmedUp, timings: { buildMs: built - started, warmupMs: Date.now() - built, ...stages } }
  } catch (error) {
    servable.dispose()
    throw new Error(`warmup inference failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error })
  }
}
