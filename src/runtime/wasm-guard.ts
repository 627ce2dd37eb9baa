/**
 * @module runtime/wasm-guard — keeps one failed allocation or one trap from corrupting the wasm backend.
 *
 * tfjs-backend-wasm 4.22 does not check what `_malloc` returns (`BackendWasm.move` in
 * `dist/backend_wasm.js`): when an allocation fails, `_malloc` returns 0 and the kernel writes its
 * output over the start of wasm memory. From then on every inference in the isolate fails with
 * `RuntimeError: memory access out of bounds`, or, worse, answers with garbage. This module wraps the
 * Emscripten module the backend is built on, so that:
 *
 * - a failed allocation throws a clean `WasmAllocationError` before anything is written;
 * - the heap grows at most to `maxHeapBytes` (`WASM_HEAP_MAX_BYTES` by default), so that an
 *   allocation past it fails as above instead of growing memory towards the isolate's limit;
 * - a `WebAssembly.RuntimeError` escaping from a kernel marks the backend broken: `backendBroken()`
 *   says why, and every later call into the module throws `WasmBackendBrokenError` instead of
 *   computing on a heap in an unknown state. Only a fresh instance (`rebuildWasmBackend`) serves again.
 *
 * The package internals this relies on (re-check them on a tf.js upgrade; `test/wasm-guard.test.ts`
 * fails when they change): BackendWasm calls `this.wasm._malloc(numBytes)` and `this.wasm._free`,
 * its kernels reach C through `backend.wasm.cwrap(…)` in their setup functions, and the glue imports
 * `env.emscripten_resize_heap` and grows `instance.exports.memory` through `memory.grow`.
 */
import { BackendWasm } from '@tensorflow/tfjs-backend-wasm'
import * as tf from '@tensorflow/tfjs-core'

/**
 * Largest wasm heap the backend may grow to. An isolate has 128 MB for everything: 78 MiB (81.8 MB) holds
 * the zoo's largest model once it has served (nanodet, 77.6–79.2 MB) and leaves 46.2 MB for JavaScript
 * (19.3 MB between requests) and what requests hold while they run (docs/memory.md, "The worst case the
 * defaults allow"); it was 96 MiB, which left 27.3. Emscripten starts at 16 MiB.
 */
export const WASM_HEAP_MAX_BYTES = 78 * 1024 * 1024

const PAGE_BYTES = 65_536
/**
 * The least the heap grows by at a time (unless an allocation asks for more, or the cap is nearer).
 * A grow costs about 0.6 ms once the heap is past 50 MiB (V8, measured in Node), and growing by the
 * pages each allocation asks made 81 grows of MobileNetV2's load and first row; by 2 MiB at least, a
 * few dozen, the slack left at most 2 MiB.
 */
const GROWTH_STEP_BYTES = 2 * 1024 * 1024
/** The smallest block the free-space probe takes: smaller fragments are left (and count as used). */
const PROBE_MIN_BLOCK = 4096
/** C functions that release memory: they become no-ops once the backend is broken or retired, so disposing a tensor never throws. */
const RELEASES: ReadonlySet<string> = new Set(['dispose_data', 'dispose'])

export interface GuardOptions {
  /** Largest heap, in bytes (rounded down to whole 64 KiB pages); `WASM_HEAP_MAX_BYTES` by default. */
  maxHeapBytes?: number
}

/** A tensor the wasm heap cannot hold: nothing was allocated or written. */
export class WasmAllocationError extends Error {
  override name = 'WasmAllocationError'
  constructor(
    readonly bytes: number,
    readonly heapBytes: number,
    readonly maxHeapBytes: number,
  ) {
    super(`wasm backend: allocation of ${bytes} bytes failed (heap ${heapBytes} bytes, at most ${maxHeapBytes})`)
  }
}

/** The backend trapped once; its heap can no longer be trusted. */
export class WasmBackendBrokenError extends Error {
  override name = 'WasmBackendBrokenError'
}

interface GuardState {
  maxHeapBytes: number
  memory?: WebAssembly.Memory
  /** Why the backend broke: the first RuntimeError that escaped from C. */
  broken?: string
  /** Disposed (replaced): tensors still held by old models are released without touching C. */
  retired: boolean
  /** While the free-space probe runs: the heap may not grow at all, so `malloc` fails once the free space is taken. */
  frozen?: boolean
  /**
   * While a model is measured: the heap grows by exactly the pages an allocation asks for, not by
   * GROWTH_STEP_BYTES at least, so its growth is the run's need (heapProbe).
   */
  exact?: boolean
  /** The heap size the glue last asked for (emscripten_resize_heap's argument). */
  requested?: number
  /** The module's own malloc and free, without the guard: the probe's blocks. */
  raw?: { malloc(bytes: number): number; free(offset: number): void }
}

const GUARD = Symbol('wasm-guard')

/** The parts of the Emscripten module the guard wraps. */
interface Guardable {
  _malloc(bytes: number): number
  _free(offset: number): void
  cwrap(name: string, returnType: string | null, argTypes: string[]): (...args: number[]) => unknown
  [GUARD]?: GuardState
}

interface InstantiateHook {
  instantiateWasm(
    imports: WebAssembly.Imports,
    receiveInstance: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void,
  ): object
}

const heapBytes = (state: GuardState) => state.memory?.buffer.byteLength ?? 0

function refuseIfBroken(state: GuardState): void {
  if (state.broken !== undefined) throw new WasmBackendBrokenError(`the wasm backend failed earlier: ${state.broken}`)
}

/** Calls into C; a trap marks the backend broken, for good. */
function trapping<T>(state: GuardState, what: string, call: () => T): T {
  try {
    return call()
  } catch (error) {
    if (!(error instanceof WebAssembly.RuntimeError)) throw error
    state.broken ??= `${error.message} (in ${what})`
    throw new WasmBackendBrokenError(`the wasm backend failed: ${state.broken}`, { cause: error })
  }
}

/** Pages a heap of `current` bytes must grow by to reach the `requested` size the glue asked for. */
export const pagesAsked = (requested: number, current: number): number =>
  Math.max(0, Math.ceil((requested - current) / PAGE_BYTES))

/**
 * A stand-in for an Emscripten module's exported memory, which its glue grows through: `grow` gives at
 * most `limit(current size in bytes)` of the pages the glue asks for (20 % of the heap more than the
 * allocation needs, to amortise growth). tf.js's heap here, the image decoders' (images/decode.ts).
 */
export function clampedGrowth(memory: WebAssembly.Memory, limit: (current: number) => number): WebAssembly.Memory {
  return {
    get buffer() {
      return memory.buffer
    },
    grow(pages: number) {
      return memory.grow(Math.max(0, Math.min(pages, limit(memory.buffer.byteLength))))
    },
  } as unknown as WebAssembly.Memory
}

/** Refuses heap growth past the cap before the glue tries it. */
function capImports(imports: WebAssembly.Imports, state: GuardState): WebAssembly.Imports {
  const env = imports.env as Record<string, unknown> | undefined
  const resize = env?.emscripten_resize_heap
  if (typeof resize !== 'function')
    throw new Error(
      'the tfjs-backend-wasm glue no longer imports env.emscripten_resize_heap: re-check runtime/wasm-guard.ts',
    )
  env!.emscripten_resize_heap = (requested: number) => {
    if (state.frozen || requested >>> 0 > state.maxHeapBytes) return 0
    state.requested = requested >>> 0
    return (resize as (n: number) => number)(requested)
  }
  return imports
}

/**
 * Hands the glue a memory whose `grow` stops at the cap, and at the pages the allocation asked for or
 * GROWTH_STEP_BYTES if more. The glue over-grows by 20 % of the heap to amortise growth (+15.8 MB at
 * MobileNetV2's first photo): WebAssembly memory never shrinks, so that slack would stay the
 * isolate's for good. Clamped, a request that fits under the cap still succeeds, and nothing goes past it.
 */
function capInstance(instance: WebAssembly.Instance, state: GuardState): WebAssembly.Instance {
  const memory = instance.exports.memory
  if (!(memory instanceof WebAssembly.Memory))
    throw new Error('the tfjs-backend-wasm module exports no memory: re-check runtime/wasm-guard.ts')
  state.memory = memory
  const capped = clampedGrowth(memory, (current) => {
    const limit = (state.maxHeapBytes - current) / PAGE_BYTES
    if (state.requested === undefined) return limit
    const asked = pagesAsked(state.requested, current)
    return Math.min(limit, state.exact ? asked : Math.max(asked, GROWTH_STEP_BYTES / PAGE_BYTES))
  })
  return { exports: { ...instance.exports, memory: capped } } as unknown as WebAssembly.Instance
}

function guardModule<M>(emscripten: M, state: GuardState): M {
  const module = emscripten as M & Guardable
  const malloc = module._malloc.bind(module)
  const free = module._free.bind(module)
  const cwrap = module.cwrap.bind(module)
  state.raw = { malloc, free }
  const guardedMalloc = (bytes: number) => {
    refuseIfBroken(state)
    // Sizes past the cap can never succeed, and past 4 GiB they would wrap around in the i32 argument.
    if (bytes > state.maxHeapBytes) throw new WasmAllocationError(bytes, heapBytes(state), state.maxHeapBytes)
    const offset = trapping(state, 'malloc', () => malloc(bytes))
    if (offset === 0 && bytes > 0) throw new WasmAllocationError(bytes, heapBytes(state), state.maxHeapBytes)
    return offset
  }
  const guardedFree = (offset: number) => {
    if (state.broken === undefined && !state.retired) trapping(state, 'free', () => free(offset))
  }
  // The glue's `_malloc` is a thunk that, on its first call, assigns the raw export to
  // `Module._malloc`: a plain assignment of the wrapper would be undone by it. Writes are ignored.
  for (const [key, value] of [
    ['_malloc', guardedMalloc],
    ['_free', guardedFree],
  ] as const) {
    Object.defineProperty(module, key, { get: () => value, set: () => {}, configurable: true, enumerable: true })
  }
  module.cwrap = (name, returnType, argTypes) => {
    const f = cwrap(name, returnType, argTypes)
    if (RELEASES.has(name)) {
      return (...args: number[]) =>
        state.broken === undefined && !state.retired ? trapping(state, name, () => f(...args)) : undefined
    }
    return (...args: number[]) => {
      refuseIfBroken(state)
      return trapping(state, name, () => f(...args))
    }
  }
  module[GUARD] = state
  return module
}

/**
 * Wraps the package's Emscripten factory: the instance it makes has a capped heap, and the module it
 * resolves to checks every allocation and records the first trap. Build the backend from that module
 * with `GuardedWasmBackend`.
 */
export function guardedFactory<C extends InstantiateHook, M>(
  factory: (config: C) => Promise<M>,
  options: GuardOptions = {},
): (config: C) => Promise<M> {
  return (config) => {
    const max = Math.floor((options.maxHeapBytes ?? WASM_HEAP_MAX_BYTES) / PAGE_BYTES) * PAGE_BYTES
    const state: GuardState = { maxHeapBytes: max, retired: false }
    return factory({
      ...config,
      instantiateWasm: (imports, receiveInstance) =>
        config.instantiateWasm(capImports(imports, state), (instance, module) =>
          receiveInstance(capInstance(instance, state), module),
        ),
    }).then((emscripten) => guardModule(emscripten, state))
  }
}

/** tf.js's wasm backend on a guarded module; once disposed, its tensors are released without touching C. */
export class GuardedWasmBackend extends BackendWasm {
  readonly #state: GuardState

  constructor(wasm: ConstructorParameters<typeof BackendWasm>[0]) {
    super(wasm)
    const state = (wasm as unknown as Guardable)[GUARD]
    if (!state) throw new Error('GuardedWasmBackend needs a module made by guardedFactory')
    this.#state = state
  }

  /** Why the backend broke, or `undefined` while it is sound. */
  get broken(): string | undefined {
    return this.#state.broken
  }

  /** Bytes of wasm memory now (it never shrinks), and the most it may grow to. */
  heap(): { bytes: number; maxBytes: number } {
    return { bytes: heapBytes(this.#state), maxBytes: this.#state.maxHeapBytes }
  }

  /**
   * Takes the heap's free space without growing it (the heap is frozen while blocks of halving sizes,
   * down to 4 KiB, are allocated until none fits) and holds it until `release`. What the heap then
   * needs shows as growth. Free fragments under 4 KiB are not taken, so they count as used.
   */
  fillFree(): { bytes: number; release(): number } {
    const state = this.#state
    const raw = state.raw!
    const blocks: number[] = []
    let bytes = 0
    state.frozen = true
    try {
      for (
        let size = 2 ** Math.floor(Math.log2(Math.max(PROBE_MIN_BLOCK, heapBytes(state))));
        size >= PROBE_MIN_BLOCK;
      ) {
        const offset = raw.malloc(size)
        if (offset === 0) size /= 2
        else {
          blocks.push(offset)
          bytes += size
        }
      }
    } finally {
      state.frozen = false
    }
    let released = false
    return {
      bytes,
      /** Frees the blocks; returns the bytes they held. */
      release: () => {
        if (released || state.retired || state.broken !== undefined) return bytes
        released = true
        for (const offset of blocks) raw.free(offset)
        return bytes
      },
    }
  }

  /** Bytes of the heap in use (by tensors, kernels' state, the allocator): its size less the free space `fillFree` can take. */
  usedBytes(): number {
    const probe = this.fillFree()
    probe.release()
    return heapBytes(this.#state) - probe.bytes
  }

  /** Runs `f` with the heap growing by exactly what is asked (not GROWTH_STEP_BYTES at least): growth then measures need. */
  async exactGrowth<T>(f: () => Promise<T>): Promise<T> {
    this.#state.exact = true
    try {
      return await f()
    } finally {
      this.#state.exact = false
    }
  }

  // tf.js disposes a backend when it is removed (setWasmModule, rebuildWasmBackend). Models built on
  // it may still hold tensors; BackendWasm would null `wasm` and make their disposal throw.
  override dispose(): void {
    if (this.#state.retired) return
    this.wasm.tfjs.dispose() // a no-op when broken
    this.#state.retired = true
  }

  override disposeData(dataId: object, force?: boolean): boolean {
    if (!this.#state.retired) return super.disposeData(dataId, force)
    this.dataIdMap.delete(dataId)
    return true
  }
}

/** The active backend when it is the guarded wasm one (its heap can be probed), else undefined. */
export function guardedBackend(): GuardedWasmBackend | undefined {
  if (tf.getBackend() !== 'wasm') return undefined
  const backend = tf.backend()
  return backend instanceof GuardedWasmBackend ? backend : undefined
}

/** The failed allocation `error` is or was caused by, if any. */
export function findAllocation(error: unknown): WasmAllocationError | undefined {
  for (let e = error; e instanceof Error; e = e.cause) if (e instanceof WasmAllocationError) return e
  return undefined
}

/** Whether `error` (or a cause) is an allocation that failed for want of heap, one an emptier heap could satisfy. */
export function isAllocationFailure(error: unknown): error is Error {
  for (let e = error; e instanceof Error; e = e.cause)
    if (e instanceof WasmAllocationError) return e.bytes <= e.maxHeapBytes
  return false
}

/** Why the active wasm backend broke, or `undefined` when it is sound or another backend is active. */
export function backendBroken(): string | undefined {
  if (tf.getBackend() !== 'wasm') return undefined
  const backend = tf.backend()
  return backend instanceof GuardedWasmBackend ? backend.broken : undefined
}

/**
 * Whether `error` (or one of its causes) is the wasm backend failing rather than the model: an
 * allocation that would fit an empty heap but not this one, or a trap.
 */
export function isBackendFailure(error: unknown): boolean {
  for (let e = error; e instanceof Error; e = e.cause) {
    if (e instanceof WasmBackendBrokenError) return true
    if (e instanceof WasmAllocationError) return e.bytes <= e.maxHeapBytes
  }
  return false
}
