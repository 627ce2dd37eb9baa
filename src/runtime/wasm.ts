/**
 * @module runtime/wasm — tf.js's WebAssembly (SIMD) backend, fed a precompiled module.
 *
 * Workers forbid run-time code generation: `WebAssembly.compile` and `WebAssembly.instantiate(bytes)`
 * throw, and a `.wasm` file arrives only as a statically imported `WebAssembly.Module`.
 * `@tensorflow/tfjs-backend-wasm` 4.22.0 instantiates only from fetched bytes (tensorflow/tfjs#8157),
 * so its own backend factory fails here — and, on its bytes path, leaves a rejection nobody
 * catches, so the request hangs.
 *
 * No patch is needed: the package exports `BackendWasm` (the backend class; its kernels register
 * for the name `wasm` on import), and the Emscripten factory it wraps accepts the documented
 * `instantiateWasm(imports, receiveInstance)` hook. This module calls that factory itself with a
 * hook that instantiates the precompiled module, and registers the result as the `wasm` backend in
 * place of the package's own factory. The package internals relied on: the factory's path
 * (`wasm-out/tfjs-backend-wasm.js`), the six C exports `init()` in `dist/backend_wasm.js` wraps, and
 * the glue reading `process` only while the factory runs (see `withoutNodeProcess`);
 * `test/backend.test.ts` catches a tf.js upgrade that changes them. docs/wasm-backend.md ("How the
 * WebAssembly module gets in") says why this rather than a patch.
 */
import { BackendWasm } from '@tensorflow/tfjs-backend-wasm'
import * as factoryModule from '@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm.js'
// The SIMD build, without threads (Workers have none). wrangler's default module rules, which the
// vitest pool honours too, turn a `.wasm` import into a compiled WebAssembly.Module.
import simdModule from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm'
import * as tf from '@tensorflow/tfjs-core'
import { guardedFactory, GuardedWasmBackend } from './wasm-guard'
import type { GuardOptions } from './wasm-guard'

/** What the Emscripten glue resolves to: only the parts used here and by BackendWasm. */
interface EmscriptenModule {
  cwrap(name: string, returnType: string | null, argTypes: string[]): (...args: number[]) => unknown
  tfjs?: Record<string, unknown>
}

interface FactoryConfig {
  instantiateWasm(
    imports: WebAssembly.Imports,
    receiveInstance: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void,
  ): object
  locateFile(path: string): string
  onAbort(reason: unknown): void
  print(text: string): void
  printErr(text: string): void
}

type Factory = (config: FactoryConfig) => Promise<EmscriptenModule>

// The glue is CommonJS (`module.exports = factory`); bundlers hand it over as the default export
// or as the namespace itself, which is how the package's own backend_wasm.js reads it.
const wasmFactory = ((factoryModule as { default?: unknown }).default ?? factoryModule) as Factory

/** Registration priority: below the cpu backend's 1, so tf.js never picks wasm on its own — `ensureBackend` does. */
const PRIORITY = 0

/** The precompiled SIMD module bundled with the Worker. */
export const bundledWasmModule: WebAssembly.Module = simdModule

/**
 * Runs `f` with the global `process` hidden. workerd has a Node-like `process`, so the Emscripten
 * glue would take its Node path: `require('fs')`, `__dirname` (a ReferenceError in a Worker's
 * bundle, though vitest's module runner defines it) and process-wide `uncaughtException` and
 * `unhandledRejection` listeners that rethrow. Hidden, it takes its plain-JavaScript path, the same
 * under wrangler and vitest. The glue reads `process` only synchronously while the factory runs,
 * and nothing else runs in between.
 */
export function withoutNodeProcess<T>(f: () => T): T {
  const global = globalThis as { process?: unknown }
  const descriptor = Object.getOwnPropertyDescriptor(global, 'process')
  if (!descriptor?.configurable) return f()
  delete global.process
  try {
    return f()
  } finally {
    Object.defineProperty(global, 'process', descriptor)
  }
}

/**
 * Instantiates the tf.js WebAssembly backend from a compiled module, without fetching or compiling
 * anything, with the allocation guard of runtime/wasm-guard.ts. Rejects — it never hangs — when the module cannot be instantiated (a LinkError for a
 * module built for other imports) or the runtime aborts while starting.
 */
export function instantiateWasmBackend(module: WebAssembly.Module, guard: GuardOptions = {}): Promise<BackendWasm> {
  return new Promise<EmscriptenModule>((resolve, reject) => {
    const fail = (reason: unknown) => reject(reason instanceof Error ? reason : new Error(String(reason)))
    let ready: Promise<EmscriptenModule>
    try {
      ready = withoutNodeProcess(() =>
        // Capped heap, checked allocations, traps recorded: runtime/wasm-guard.ts.
        guardedFactory(
          wasmFactory,
          guard,
        )({
          instantiateWasm(imports, receiveInstance) {
            WebAssembly.instantiate(module, imports).then((instance) => receiveInstance(instance, module), fail)
            return {} // asynchronous: the exports arrive through receiveInstance
          },
          // Nothing is ever fetched; the glue asks for a path only to name it in messages.
          locateFile: (path) => path,
          onAbort: (reason) => fail(new Error(`the WebAssembly runtime aborted: ${String(reason)}`)),
          print: () => {},
          printErr: () => {},
        }),
      )
    } catch (error) {
      fail(error)
      return
    }
    ready.then(resolve, fail)
  }).then((emscripten) => {
    // As init() in dist/backend_wasm.js does; BackendWasm calls these.
    emscripten.tfjs = {
      init: emscripten.cwrap('init', null, []),
      initWithThreadsCount: emscripten.cwrap('init_with_threads_count', null, ['number']),
      getThreadsCount: emscripten.cwrap('get_threads_count', 'number', []),
      registerTensor: emscripten.cwrap('register_tensor', null, ['number', 'number', 'number']),
      disposeData: emscripten.cwrap('dispose_data', null, ['number']),
      dispose: emscripten.cwrap('dispose', null, []),
    }
    return new GuardedWasmBackend(emscripten as unknown as ConstructorParameters<typeof BackendWasm>[0])
  })
}

// Importing the package registered its own factory, which fetches and compiles bytes and so cannot
// work here; with it gone, tf.js falls back to cpu until a WasmBackend registers the bundled module.
// (Removing a factory does no I/O, so it may run in global scope.)
if (tf.findBackendFactory('wasm') != null) tf.removeBackend('wasm')

/**
 * The isolate's wasm backend: the module it is instantiated from and, once made, the instance.
 * Creating one registers its factory as tf.js's `wasm` backend in place of the package's own (which
 * fetches and compiles bytes), so from then on even a plain `tf.setBackend('wasm')` instantiates the
 * bundled module. A failed instantiation is not kept, so a later call tries again.
 */
export class WasmBackend {
  private module: WebAssembly.Module = bundledWasmModule
  private guard: GuardOptions = {}
  private instantiated: Promise<BackendWasm> | undefined

  constructor() {
    this.register()
  }

  private instance(): Promise<BackendWasm> {
    if (!this.instantiated) {
      const attempt = instantiateWasmBackend(this.module, this.guard)
      this.instantiated = attempt
      attempt.catch(() => {
        if (this.instantiated === attempt) this.instantiated = undefined
      })
    }
    return this.instantiated
  }

  private register(): void {
    if (tf.findBackendFactory('wasm') != null) tf.removeBackend('wasm')
    tf.registerBackend('wasm', () => this.instance(), PRIORITY)
  }

  /**
   * Makes `wasm` the active tf.js backend, instantiating it first if need be. Throws, with the
   * reason, when it cannot (tf.js's own `setBackend` would only log the reason and return false).
   */
  async activate(): Promise<void> {
    if (!this.instantiated && !(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'))) {
      throw new Error('this runtime has no WebAssembly SIMD, and only the SIMD build is bundled')
    }
    await this.instance()
    if (!(await tf.setBackend('wasm'))) throw new Error("tf.setBackend('wasm') failed")
  }

  /**
   * Instantiates from `module` from now on (a custom tfjs-backend-wasm build; tests), or from the
   * bundled SIMD module when none is given, with `guard`'s heap cap (tests) or the default one; a
   * rebuild keeps both. A wasm backend already running is disposed — with every
   * tensor it holds — so switch to another backend first.
   */
  useModule(module: WebAssembly.Module = bundledWasmModule, guard: GuardOptions = {}): void {
    this.module = module
    this.guard = guard
    this.instantiated = undefined
    this.register()
  }

  /**
   * Replaces the instance with a fresh one of the same module: after it broke (`backendBroken()` in
   * runtime/wasm-guard.ts), only a new heap can be trusted. The old instance is disposed; models built
   * on it cannot run any more, so drop them first and build them again after. Their tensors may still
   * be disposed at any time (a no-op). If wasm was the active backend, it is active again when this
   * resolves.
   */
  async rebuild(): Promise<void> {
    const active = tf.getBackend() === 'wasm'
    this.useModule(this.module, this.guard)
    if (active) await this.activate()
  }
}
