/** @module runtime/tf — the one tf.js the Worker uses, and the choice of its backend (`wasm` or `cpu`). */
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import { log } from '../core/log'
import { WasmBackend } from './wasm'

export { tf }

/**
 * Bytes of the tensors' data as the budget counts them: 1 an element for bool, 4 for every other dtype
 * tf.js stores (strings are rare here and counted as 4).
 */
export const tensorBytes = (tensors: Iterable<tf.Tensor>): number => {
  let n = 0
  for (const t of tensors) n += t.size * (t.dtype === 'bool' ? 1 : 4)
  return n
}

/** Backends the Worker can run on: WebAssembly with SIMD (fast), or plain JavaScript (always works). */
export const BACKENDS = ['wasm', 'cpu'] as const
export type BackendName = (typeof BACKENDS)[number]

/** Used when neither `configure` nor the caller names one. */
export const DEFAULT_BACKEND: BackendName = 'wasm'

/**
 * The isolate's tf.js backend: which one is wanted (the `TF_BACKEND` var) and which one runs.
 * tf.js's engine is process-wide, so there is one of these per isolate, owned by the isolate state.
 */
export class Backend {
  readonly wasm = new WasmBackend()
  private configured: BackendName | undefined
  private chosen: { wanted: BackendName; backend: Promise<BackendName> } | undefined

  /**
   * Sets the backend `ensure()` chooses, from the `TF_BACKEND` var: `wasm` (the default) or `cpu`;
   * unset or empty keeps the default. Cheap (it only records the name), so every use of the isolate
   * calls it. A name it does not know is a deployment mistake, so it throws rather than guess.
   */
  configure(name: string | undefined): void {
    if (name === undefined || name === '') {
      this.configured = undefined
      return
    }
    const lower = name.trim().toLowerCase()
    if (!(BACKENDS as readonly string[]).includes(lower)) {
      throw new Error(`invalid configuration in vars: TF_BACKEND must be one of ${BACKENDS.join(', ')}, got '${name}'`)
    }
    this.configured = lower as BackendName
  }

  private async activate(wanted: BackendName): Promise<BackendName> {
    if (wanted === 'wasm') {
      try {
        await this.wasm.activate()
        return 'wasm'
      } catch (error) {
        log('warn', 'backend.fallback', {
          wanted: 'wasm',
          reason: error instanceof Error ? error.message : String(error),
        })
      }
    }
    if (!(await tf.setBackend('cpu'))) throw new Error('tf.js cpu backend failed to initialise')
    return 'cpu'
  }

  /**
   * Initialises the tf.js backend once per isolate (the Worker's module scope starts it, src/index.ts;
   * else its first use) and resolves to the one in use. It is `preferred`, else the configured one, else `wasm`. When `wasm`
   * cannot start it falls back to `cpu` — logging `backend.fallback` with the reason, once — and stays
   * on `cpu` for the isolate's life. A failure of `cpu` rejects, and the next call tries again.
   */
  ensure(preferred?: BackendName): Promise<BackendName> {
    // workerd exposes `process.versions.node`, so tf.js takes it for Node and nags about tfjs-node,
    // which cannot run here. tf.js already chose its browser platform (WorkerGlobalScope exists).
    tf.env().set('IS_NODE', false)
    const wanted = preferred ?? this.configured ?? DEFAULT_BACKEND
    if (this.chosen?.wanted === wanted) return this.chosen.backend
    const attempt = { wanted, backend: this.activate(wanted) }
    this.chosen = attempt
    attempt.backend.catch(() => {
      if (this.chosen === attempt) this.chosen = undefined
    })
    return attempt.backend
  }

  /** Forgets the choice, so the next `ensure` chooses again (tests). Initialised backends stay registered. */
  forget(): void {
    this.chosen = undefined
    this.configured = undefined
  }
}
