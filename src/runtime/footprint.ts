/**
 * @module runtime/footprint — what a model costs in the isolate's memory, measured as it loads.
 *
 * A model's file size is not what it spends. Measured with a MobileNet v1 at 224×224 (float16 on disk,
 * 7 MB): tf.js holds 14 MB of float32 weights; the wasm backend's kernels (XNNPACK) keep packed copies
 * and buffers of about twice that, made by the first inference and freed with the model; and each row
 * of an inference needs about 6 MiB of activations at its peak. WebAssembly memory never shrinks, so
 * the heap keeps whatever high-water mark the largest run reached.
 *
 * - weights: tf.js's tensor bytes before and after the build (`tf.memory().numBytes`);
 * - kernels: KERNEL_FACTOR × weights on the wasm backend. The heap's live bytes cannot be read from
 *   outside the module (no `mallinfo` export), so this factor was measured, with a test-only probe that
 *   fills the heap's free space (test/memory.test.ts), and is checked there against the real model;
 * - activations: `tf.profile`'s peak bytes of the warmup run on batch 1 and on batch 2, times
 *   HEAP_PER_ACTIVATION_BYTE (the allocator's overhead), as an intercept
 *   and a per-row slope. A model whose inputs have unknown non-batch dimensions has no warmup: it is
 *   measured on its first real request, as bytes per input element (see `perElement`).
 */
import { tf } from './tf'

/**
 * Bytes the wasm kernels keep per byte of weights once a model has run: XNNPACK's packed filters and
 * their indirection buffers. Measured 1.97 on the MobileNet (39.5 MiB live for 13.3 MiB of weights,
 * after one inference); rounded up.
 */
export const KERNEL_FACTOR = 2

/**
 * Heap bytes per byte of tensor activations at their peak: freed blocks of one size do not fit the
 * next layer's, and the heap grew in Emscripten's steps of at least 20% then. Measured on the MobileNet: the heap grew
 * about 7.9 MiB per extra row for 6.1 MiB of tensor peak (1.3×), and a 10-row request in sub-batches
 * counted at 1.0× grew the heap 24% past its budget; rounded up.
 */
export const HEAP_PER_ACTIVATION_BYTE = 1.5

/** A model's memory, in bytes. */
export interface Footprint {
  /** Tensor bytes tf.js holds for the weights (float32 after dequantization). */
  weightBytes: number
  /** Bytes the backend's kernels keep while the model lives (0 on the cpu backend). */
  kernelBytes: number
  /** Activation bytes of a run, besides the rows: the intercept. */
  activationBytes: number
  /** Activation bytes per row: the slope. */
  rowBytes: number
  /**
   * Activation bytes per input element, for inputs with dimensions only a request tells; set by the
   * first request (`measured` is then `'first-request'`).
   */
  perElement?: number
  /**
   * Where the figures come from: the wasm heap's growth on a heap with no free space, at batch 1 and 2
   * (or 1 when the batch is fixed); the repository index's measurement (`memory`, its digest matching
   * the files); tf.js's tensor peaks at warmup scaled by HEAP_PER_ACTIVATION_BYTE (the estimate, when
   * the heap had no room to measure in); a first request; or not yet.
   */
  measured: 'heap-1-2' | 'heap-1' | 'index' | 'warmup-1-2' | 'warmup-1' | 'first-request' | 'pending'
  /**
   * What this isolate's wasm heap really gave the model, measured at load with the free-space probe
   * (runtime/wasm-guard.ts `fillFree`): bytes it holds at rest, plus one row's growth when that was
   * measured. Absent off the wasm backend. Reported beside the counted figure, never counted itself.
   */
  heapBytes?: number
  /** How much the wasm heap grew while the model was built and warmed up (0 when it had room); a figure to compare, not one counted. */
  heapGrowthBytes: number
  /** JavaScript heap bytes the model keeps beside its tensors (its tokenizers), set when it is prepared. */
  hostBytes?: number
}

/**
 * A version's memory as the repository index records it (`memory` of a version entry, measured by the
 * zoo's script in Node on a fresh backend; the contract is docs/memory.md's). Used only when `digest`
 * matches the files the isolate read.
 */
export interface MemoryFigures {
  weightBytes: number
  restingBytes: number
  activationBytes: number
  rowBytes: number
  heapBytes1?: number
  heapBytes4?: number
  method?: string
  digest: string
}

/** The counted figures from the index's measurement. */
export function fromIndex(
  m: MemoryFigures,
): Pick<Footprint, 'weightBytes' | 'kernelBytes' | 'activationBytes' | 'rowBytes' | 'measured'> {
  return {
    weightBytes: m.weightBytes,
    kernelBytes: Math.max(0, m.restingBytes - m.weightBytes),
    activationBytes: m.activationBytes,
    rowBytes: m.rowBytes,
    measured: 'index',
  }
}

/** Bytes of the wasm heap (WebAssembly memory) when wasm is the active backend, else undefined. */
export function wasmHeapBytes(): number | undefined {
  if (tf.getBackend() !== 'wasm') return undefined
  const backend = tf.findBackend('wasm') as unknown as { wasm?: { HEAPU8?: Uint8Array } } | null
  return backend?.wasm?.HEAPU8?.buffer.byteLength
}

/** Bytes a model holds at rest: weights, kernel state, and what it keeps in JavaScript (tokenizers). */
export const restingBytes = (f: Footprint) => f.weightBytes + f.kernelBytes + (f.hostBytes ?? 0)

/**
 * Activation bytes of one run of `rows` rows; with `elements` (input elements of the run) for a model
 * measured per element. A model not measured yet has no figure: undefined.
 */
export function activationBytes(f: Footprint, rows: number, elements?: number): number | undefined {
  if (f.measured === 'pending') return undefined
  if (f.perElement !== undefined && elements !== undefined) return Math.ceil(f.perElement * elements)
  return f.activationBytes + f.rowBytes * rows
}

/** What the model costs with one row running: the figure `/metrics`, `/admin/cache` and v2 metadata report. */
export const memoryBytes = (f: Footprint) => restingBytes(f) + (activationBytes(f, 1) ?? 0)

/** What `profiled` needs of a servable: its `run` (a narrow interface, so this module does not import servable.ts). */
export interface Runnable {
  run(inputs: Record<string, tf.Tensor>): Promise<Record<string, tf.Tensor>>
}

/** Peak tensor bytes of `run()` beyond those alive before it (its activations and outputs), with the outputs. Not scaled to heap bytes. */
export async function profiled(
  servable: Runnable,
  feeds: Record<string, tf.Tensor>,
): Promise<{ outputs: Record<string, tf.Tensor>; peakBytes: number }> {
  let outputs: Record<string, tf.Tensor> = {}
  const before = tf.memory().numBytes
  // tf.profile times each kernel with the backend's `time`, which on wasm is async: a kernel that
  // throws (a failed allocation) would only reject a promise nobody awaits, and the profiler would
  // then fail on the missing outputs with a TypeError in place of the real error. Kernels run
  // synchronously, so while profiling they are timed synchronously and their errors propagate.
  const backend = tf.backend() as unknown as { time: (f: () => void) => Promise<{ kernelMs: number }> }
  const own = Object.getOwnPropertyDescriptor(backend, 'time')
  backend.time = (f) => {
    const start = performance.now()
    f()
    return Promise.resolve({ kernelMs: performance.now() - start })
  }
  try {
    const info = await tf.profile(async () => {
      outputs = await servable.run(feeds)
    })
    return { outputs, peakBytes: Math.max(0, info.peakBytes - before) }
  } catch (error) {
    // tf.profile leaves the engine profiling when its function throws: every later kernel would be.
    ;(tf.engine().state as unknown as { profiling: boolean }).profiling = false
    throw error
  } finally {
    if (own) Object.defineProperty(backend, 'time', own)
    else delete (backend as Partial<typeof backend>).time
  }
}

/**
 * Intercept and slope, in heap bytes, from the tensor peaks of batch 1 and batch 2; with batch 1 alone
 * (a fixed batch), all of it per row. A slope steeper than batch 1's whole peak keeps no intercept.
 */
export function fitRows(tensorPeak1: number, tensorPeak2?: number): Pick<Footprint, 'activationBytes' | 'rowBytes'> {
  const peak1 = Math.ceil(tensorPeak1 * HEAP_PER_ACTIVATION_BYTE)
  const peak2 = tensorPeak2 === undefined ? undefined : Math.ceil(tensorPeak2 * HEAP_PER_ACTIVATION_BYTE)
  if (peak2 === undefined) return { activationBytes: 0, rowBytes: peak1 }
  const slope = Math.max(0, peak2 - peak1)
  if (slope <= peak1) return { activationBytes: peak1 - slope, rowBytes: slope }
  return { activationBytes: 0, rowBytes: Math.ceil(peak2 / 2) }
}
