/** @module runtime/servable — builds a tf.js layers or graph model into one interface, warmed up and ready to run. */
import { loadGraphModelSync } from '@tensorflow/tfjs-converter'
import type { GraphModel } from '@tensorflow/tfjs-converter'
import { loadLayersModel } from '@tensorflow/tfjs-layers'
import type { LayersModel } from '@tensorflow/tfjs-layers'
import type { BatchingStatus } from './batching-status'
import { activationBytes, fitRows, fromIndex, KERNEL_FACTOR, profiled, wasmHeapBytes } from './footprint'
import type { Footprint, MemoryFigures } from './footprint'
import { guardedBackend, isAllocationFailure } from './wasm-guard'
import type { GuardedWasmBackend } from './wasm-guard'
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
export function wrapRun(
  servable: Servable,
  run: Servable['run'],
  own: Partial<Pick<Servable, 'dispose' | 'batching'>> = {},
): Servable {
  const props: PropertyDescriptorMap = { run: { value: run, enumerable: true } }
  for (const [key, value] of Object.entries(own)) props[key] = { value, enumerable: true }
  return Object.create(servable, props) as Servable
}

export type BuildTimings = {
  buildMs: number
  warmupMs: number
  /** Of warmupMs: the batch-1 run (the first run, so it also pays the kernels' set-up). */
  warmup1Ms?: number
  /** Of warmupMs: the batch-2 run that gives each further row's bytes (absent for a fixed batch, or when the index measured the version). */
  warmup2Ms?: number
  /** 1 when no warmup ran: these very files were warmed up in this isolate before (`Learned`); the log's figure, so a number. */
  warmupRemembered?: 1
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
function servableOf(
  format: ModelFormat,
  model: { dispose(): void },
  signature: Signature,
  weightBytes: number,
  footprint: Footprint,
  run: Servable['run'],
): Servable {
  return { format, signature, weightBytes, footprint, run, dispose: () => model.dispose() }
}

/** tfjs-layers' flag sizing the two caches `forgetLayersGraphs` empties (100 entries by default). */
const SORT_CACHE_FLAG = 'TOPOLOGICAL_SORT_CACHE_MAX_ENTRIES'

/**
 * Empties tfjs-layers' caches of sorted graphs. tfjs-layers 4.22 keeps, for every set of tensors a
 * layers model has run, its graph topologically sorted, in two module-level LRU caches of 100 entries
 * (`cachedSorted` and `cachedRecipientCounts` in `dist/engine/executor.js`), keyed by the names of
 * its output tensors, which tfjs-layers makes unique for each model it builds: a disposed model stays
 * reachable through them — every layer, variable wrapper and symbolic tensor of it — until 100 later
 * keys push it out, so an isolate that loads layers models again and again holds up to 100 dead ones
 * (docs/memory.md, "The zoo soak"). The flag's hook is the package's only way in:
 * set to 0 it drops every entry, set back it allows 100 again. Models still loaded sort again on
 * their next run, which costs a walk of their graph.
 */
function forgetLayersGraphs(): void {
  const entries = tf.env().getNumber(SORT_CACHE_FLAG)
  tf.env().set(SORT_CACHE_FLAG, 0)
  tf.env().set(SORT_CACHE_FLAG, entries)
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
  // Disposed, the model leaves tfjs-layers' caches too, or they keep it reachable (forgetLayersGraphs).
  const disposable = {
    dispose: () => {
      model.dispose()
      forgetLayersGraphs()
    },
  }
  return servableOf('layers-model', disposable, { inputs, outputs }, weightBytes, footprint, async (feeds) => {
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

function graphServable(
  model: GraphModel<tf.io.IOHandlerSync>,
  artifacts: tf.io.ModelArtifacts,
  weightBytes: number,
  footprint: Footprint,
): Servable {
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

/** Below this, heap figures (whole pages, 4 KiB probe blocks) are too coarse to count: the estimate is kept. */
const PRECISE_BYTES = 1024 * 1024

/**
 * Heap room a measured warmup must have beyond the kernels' estimate, per weight byte: two rows of
 * activations, guessed before anything has run (MobileNets need ~1 weight's worth per row). Measuring
 * takes the free space, so the heap grows by the whole need (free again after).
 */
const MEASURE_ROOM_PER_WEIGHT_BYTE = 3

/** Whether warmup can make zeros for this input: its dtype is numeric and every dimension but the batch is known. */
const warmable = (spec: TensorSpec) =>
  spec.shape !== null &&
  spec.dtype !== 'string' &&
  spec.dtype !== 'complex64' &&
  spec.shape.every((d, i) => d >= 0 || (d === -1 && i === 0))

/** Zeros in the input's shape with a batch of `rows`, or `undefined` when a dimension cannot be guessed. */
function warmupInput(spec: TensorSpec, rows: number): tf.Tensor | undefined {
  if (!warmable(spec)) return undefined
  return tf.zeros(
    spec.shape!.map((d, i) => (d === -1 && i === 0 ? rows : d)),
    spec.dtype,
  )
}

/** Profiles one run on zeros of `rows` rows: its peak activation bytes and outputs (or undefined: an input has unknown dimensions). */
async function runZeros(
  servable: Servable,
  rows: number,
): Promise<{ outputs: Record<string, tf.Tensor>; peakBytes: number } | undefined> {
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
 * How warmup measures: on the wasm backend with room in its heap, each run's need is the heap's growth
 * with no free space left (`fillFree`) and growth exact, so allocator overhead and fragmentation are
 * in the figure; otherwise tf.js's tensor peaks scaled by HEAP_PER_ACTIVATION_BYTE (runtime/footprint.ts).
 */
interface HeapMeter {
  backend: GuardedWasmBackend
}

/** Runs `f` on a heap with no free space, growing exactly: returns its result and the heap's growth. */
async function onFullHeap<T>(
  backend: GuardedWasmBackend,
  f: () => Promise<T>,
): Promise<{ result: T; growth: number; fill: { release(): void } }> {
  const fill = backend.fillFree()
  try {
    const before = backend.heap().bytes
    const result = await backend.exactGrowth(f)
    return { result, growth: backend.heap().bytes - before, fill }
  } catch (error) {
    fill.release()
    throw error
  }
}

/** Sets output shapes and dtypes the artifacts did not declare from a warmup run's outputs. */
function learnOutputs(servable: Servable, outputs: Record<string, tf.Tensor>, batchIsDynamic: boolean): void {
  for (const spec of servable.signature.outputs) {
    const y = outputs[spec.name]
    if (!y) continue
    if (spec.shape === null || spec.shape.length !== y.shape.length) {
      spec.shape = y.shape.map((d, i) => (i === 0 && batchIsDynamic ? -1 : d))
    }
    spec.dtype = y.dtype as DType
  }
}

/**
 * Runs one inference on zeros so the first real request pays no kernel set-up, and fills in
 * output shapes and dtypes the artifacts did not declare. Measures the activations on batch 1 and,
 * when the batch is dynamic, on batch 2 (see runtime/footprint.ts): with `meter`, on the heap itself —
 * the 1-row run's growth is the kernels' state plus its activations, the free space it leaves is its
 * activations, and the 2-row run (every byte taken again) grows by its whole need. Returns false when
 * it had to skip because an input has dimensions only a real request can tell.
 */
async function warmup(
  servable: Servable,
  footprint: Footprint,
  timings: Partial<BuildTimings>,
  meter?: HeapMeter,
  batchOneOnly = false,
): Promise<boolean> {
  if (!servable.signature.inputs.every(warmable)) return false
  const batchIsDynamic = servable.signature.inputs.every((s) => s.shape?.[0] === -1)
  if (!meter) {
    let started = Date.now()
    const one = (await runZeros(servable, 1))!
    timings.warmup1Ms = Date.now() - started
    learnOutputs(servable, one.outputs, batchIsDynamic)
    tf.dispose(one.outputs)
    // With the version measured outside the isolate (the index), the batch-2 run is not needed before the first answer.
    started = Date.now()
    const two = batchIsDynamic && !batchOneOnly ? await runZeros(servable, 2) : undefined
    if (two) timings.warmup2Ms = Date.now() - started
    tf.dispose(two?.outputs ?? {})
    Object.assign(footprint, fitRows(one.peakBytes, two?.peakBytes), {
      measured: two === undefined ? 'warmup-1' : 'warmup-1-2',
    })
    return true
  }
  const { backend } = meter
  const fills: { release(): void }[] = []
  try {
    let started = Date.now()
    const one = await onFullHeap(backend, async () => (await runZeros(servable, 1))!)
    timings.warmup1Ms = Date.now() - started
    fills.push(one.fill)
    learnOutputs(servable, one.result.outputs, batchIsDynamic)
    tf.dispose(one.result.outputs)
    // What the run freed is its activations; what it kept is the kernels' state. The 2-row run may
    // use that freed space again (it is released), so its need is that space plus its growth: the
    // heap ends no larger than an unmeasured warmup would leave it.
    const row1 = backend.fillFree().release()
    let two: { result: { peakBytes: number }; growth: number } | undefined
    if (batchIsDynamic) {
      const before = backend.heap().bytes
      started = Date.now()
      // Two rows may not fit where one did (a MobileNetV2 at 224×224 needs ~26 MB of heap a row):
      // then every byte of the one row counts per row, which errs high.
      const result = await backend
        .exactGrowth(() => runZeros(servable, 2))
        .catch((error: unknown) => {
          if (isAllocationFailure(error)) return undefined
          throw error
        })
      timings.warmup2Ms = Date.now() - started
      if (result) {
        tf.dispose(result.outputs)
        two = { result, growth: row1 + backend.heap().bytes - before }
      }
    }
    // The heap grows by whole 64 KiB pages: a small model's need is lost in that, so it is estimated.
    if (one.growth < PRECISE_BYTES) {
      Object.assign(footprint, fitRows(one.result.peakBytes, two?.result.peakBytes), {
        measured: two === undefined ? 'warmup-1' : 'warmup-1-2',
      })
      return true
    }
    footprint.kernelBytes = Math.max(0, one.growth - row1)
    if (!two) Object.assign(footprint, { activationBytes: 0, rowBytes: row1, measured: 'heap-1' })
    else {
      const rowBytes = Math.max(0, two.growth - row1)
      Object.assign(
        footprint,
        rowBytes <= row1
          ? { activationBytes: row1 - rowBytes, rowBytes }
          : { activationBytes: 0, rowBytes: Math.ceil(two.growth / 2) },
        { measured: 'heap-1-2' },
      )
    }
    return true
  } finally {
    for (const fill of fills) fill.release()
  }
}

type EngineState = { activeScope: { track: tf.Tensor[] } | null; registeredVariables: Record<string, tf.Variable> }
const engineState = () => tf.engine().state as unknown as EngineState

/**
 * Loads a graph model synchronously inside a scope of its own: when decoding the weights fails part
 * way (an allocation the heap cannot make), the tensors already made are disposed with the scope;
 * when it succeeds, the scope ends tracking nothing, so the weights stay. Synchronous, so no other
 * request's tensors can land in the scope.
 */
function loadGraphScoped(artifacts: tf.io.ModelArtifacts): GraphModel<tf.io.IOHandlerSync> {
  tf.engine().startScope()
  let model: GraphModel<tf.io.IOHandlerSync>
  try {
    model = loadGraphModelSync(tf.io.fromMemorySync(artifacts))
  } catch (error) {
    tf.engine().endScope()
    throw error
  }
  engineState().activeScope!.track = []
  tf.engine().endScope()
  return model
}

/**
 * A layers model whose load failed part way leaves the variables it registered (its weights):
 * they are disposed here, by name, against those registered before.
 */
async function loadLayersCleaned(handler: tf.io.IOHandler): Promise<LayersModel> {
  const before = new Set(Object.keys(engineState().registeredVariables))
  try {
    return await loadLayersModel(handler)
  } catch (error) {
    for (const [name, variable] of Object.entries(engineState().registeredVariables))
      if (!before.has(name)) variable.dispose()
    throw error
  }
}

/** The counted figures of a load that measured its files itself (not from the index, nor left to a first request). */
type MeasuredFigures = Pick<Footprint, 'activationBytes' | 'rowBytes' | 'measured'>

/** Where a load's figures were measured (not taken from the index or an earlier load, nor left to a first request). */
const MEASURED_AT_LOAD: ReadonlySet<Footprint['measured']> = new Set(['heap-1-2', 'heap-1', 'warmup-1-2', 'warmup-1'])

/**
 * What a build of some files learned in this isolate by warming them up: the output shapes and dtypes it
 * filled in, what the model held at rest after it (weights and kernel state), and its figures — for files
 * the index measured, the batch-1 run's activation bytes (the in-isolate check of the index's figures);
 * for others, what the warmup measured. The same files give the same model, outputs and figures: a later
 * build of them (a reload after an eviction or a rebuilt heap, a load after the cron validated them here)
 * takes these instead of running the model on zeros again. The kernels' set-up that run paid is paid by
 * its first request, which waited for the load anyway. Kept by the isolate, by the files
 * (repository/load.ts `EarlierLoads`).
 */
export interface Learned {
  outputs: Map<string, { shape: number[] | null; dtype: DType }>
  restingBytes?: number
  /** Files the index measured: the batch-1 run's activation bytes seen here. */
  seenBytes?: number
  /** Files measured here: the figures counted. */
  figures?: MeasuredFigures
}

/**
 * Builds artifacts into a servable model on the active backend (the caller has chosen it) and warms
 * it up. Any failure disposes what was built, so a half-built model never lingers in memory.
 * @param known the repository index's measurement of these files, when its digest matched: counted as is
 * @param earlier what an earlier build of these files learned in this isolate (`Learned`): taken as it is,
 *   and no warmup runs
 * @returns with `learned`, what this build's warmup learned, for a later build of the same files
 */
export async function buildServable(
  source: tf.io.ModelArtifacts,
  known?: MemoryFigures,
  earlier?: Learned,
): Promise<{ servable: Servable; timings: BuildTimings; warmedUp: boolean; learned?: Learned }> {
  const started = Date.now()
  const weightBytes = weightBytesOf(source)
  const probe = guardedBackend()
  const usedBefore = probe?.usedBytes()
  const heapBefore = wasmHeapBytes()
  const tensorBytesBefore = tf.memory().numBytes
  let servable: Servable | undefined
  try {
    // Our own copy: a GraphModel keeps its handler, and with it these artifacts, as long as it lives.
    const artifacts = { ...source }
    const format = detectFormat(artifacts)
    const model =
      format === 'graph-model' ? loadGraphScoped(artifacts) : await loadLayersCleaned(tf.io.fromMemory(artifacts))
    // The backend holds the weights now: the fetched shards go before warmup, so a load does not hold
    // them twice for longer than it must (a caller that keeps `source` keeps them, so the isolate does not).
    artifacts.weightData = undefined
    source = artifacts
    const held = tf.memory().numBytes - tensorBytesBefore
    const footprint: Footprint = {
      weightBytes: held,
      // The estimate until the heap is measured (warmup), or what the index measured.
      kernelBytes: tf.getBackend() === 'wasm' ? KERNEL_FACTOR * held : 0,
      activationBytes: 0,
      rowBytes: 0,
      measured: 'pending',
      heapGrowthBytes: 0,
    }
    servable =
      format === 'graph-model'
        ? graphServable(model as GraphModel<tf.io.IOHandlerSync>, artifacts, weightBytes, footprint)
        : layersServable(model as LayersModel, weightBytes, footprint)
    const built = Date.now()
    // An earlier build's lessons fit only the same kind of figures: the index's check, or its own measurement.
    const before =
      earlier && (known ? earlier.seenBytes !== undefined : earlier.figures !== undefined) ? earlier : undefined
    const stages: Partial<BuildTimings> = {}
    let warmedUp = true
    if (before) {
      for (const spec of servable.signature.outputs) {
        const learned = before.outputs.get(spec.name)
        if (learned) Object.assign(spec, { shape: learned.shape && [...learned.shape], dtype: learned.dtype })
      }
      stages.warmupRemembered = 1
    } else {
      // Measured on the heap unless the index measured these files already, and only where the heap has
      // room to grow by the estimate's twice: measuring takes the free space, so the heap grows by the
      // whole need (it is free again after). A heap that cannot grow by the whole need warms up unmeasured.
      const room =
        probe &&
        !known &&
        probe.heap().bytes + footprint.kernelBytes + MEASURE_ROOM_PER_WEIGHT_BYTE * held <= probe.heap().maxBytes
      const measuredWarmup = (meter?: HeapMeter) => warmup(servable!, footprint, stages, meter, known !== undefined)
      warmedUp = await measuredWarmup(room ? { backend: probe } : undefined).catch((error: unknown) => {
        if (!room || !isAllocationFailure(error)) throw error
        return measuredWarmup()
      })
    }
    let seen = 0
    if (known) {
      // The index's figures count, but never one row for less than the batch-1 run seen in this isolate
      // (a figure measured in another runtime, or for other files, could be low).
      seen = before?.seenBytes ?? activationBytes(footprint, 1) ?? 0
      Object.assign(footprint, fromIndex(known))
      footprint.activationBytes += Math.max(0, seen - (footprint.activationBytes + footprint.rowBytes))
    } else if (before?.figures) {
      // Measured in this runtime for these very files, on the heap where it could be: counted as they are.
      Object.assign(footprint, before.figures)
    }
    // What the model holds at rest, as the heap says: counted when measured here, reported always
    // (after a remembered warmup, as the warmup left it: its kernels' state is made by the first run).
    let resting: number | undefined
    if (probe && usedBefore !== undefined) {
      resting = Math.max(before?.restingBytes ?? 0, probe.usedBytes() - usedBefore)
      if (footprint.measured !== 'index' && resting >= PRECISE_BYTES)
        footprint.kernelBytes = Math.max(0, resting - footprint.weightBytes)
      footprint.heapBytes = resting + (footprint.measured.startsWith('heap') ? activationBytes(footprint, 1)! : 0)
    }
    const { activationBytes: intercept, rowBytes, measured } = footprint
    const learned: Learned | undefined =
      warmedUp && !before && (known || MEASURED_AT_LOAD.has(measured))
        ? {
            outputs: new Map(
              servable.signature.outputs.map((s) => [s.name, { shape: s.shape && [...s.shape], dtype: s.dtype }]),
            ),
            restingBytes: resting,
            ...(known ? { seenBytes: seen } : { figures: { activationBytes: intercept, rowBytes, measured } }),
          }
        : undefined
    footprint.heapGrowthBytes = (wasmHeapBytes() ?? 0) - (heapBefore ?? 0)
    return {
      servable,
      warmedUp,
      learned,
      timings: { buildMs: built - started, warmupMs: Date.now() - built, ...stages },
    }
  } catch (error) {
    servable?.dispose()
    if (!servable) throw error
    throw new Error(`warmup inference failed: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    })
  }
}
