/** @module runtime/tf — the one tf.js the Worker uses, and the choice of its backend (`wasm` or `cpu`). */
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import { log } from '../log'
import { activateWasmBackend } from './wasm'

export { tf }

/** Backends the Worker can run on: WebAssembly with SIMD (fast), or plain JavaScript (always works). */
export const BACKENDS = ['wasm', 'cpu'] as const
export type BackendName = (typeof BACKENDS)[number]

/** Used when neither `configureBackend` nor the caller names one. */
export const DEFAULT_BACKEND: BackendName = 'wasm'

let configured: BackendName | undefined
let chosen: { wanted: BackendName; backend: Promise<BackendName> } | undefined

/**
 * Sets the backend `ensureBackend()` chooses, from the `TF_BACKEND` var: `wasm` (the default)
 * or `cpu`; unset or empty keeps the default. Call it on every request before `ensureBackend`
 * (cheap: it only records the name). A name it does not know is a deployment mistake, so it
 * throws rather than guess.
 */
export function configureBackend(name: string | undefined): void {
  if (name === undefined || name === '') {
    configured = undefined
    return
  }
  const lower = name.trim().toLowerCase()
  if (!(BACKENDS as readonly string[]).includes(lower)) {
    throw new Error(`invalid configuration in vars: TF_BACKEND must be one of ${BACKENDS.join(', ')}, got '${name}'`)
  }
  configured = lower as BackendName
}

async function activate(wanted: BackendName): Promise<BackendName> {
  if (wanted === 'wasm') {
    try {
      await activateWasmBackend()
      return 'wasm'
    } catch (error) {
      log('warn', 'backend.fallback', { wanted: 'wasm', reason: error instanceof Error ? error.message : String(error) })
    }
  }
  if (!(await tf.setBackend('cpu'))) throw new Error('tf.js cpu backend failed to initialise')
  return 'cpu'
}

/**
 * Initialises the tf.js backend once per isolate (lazily: no work may run in global scope) and
 * resolves to the one in use. It is `preferred`, else the configured one (`configureBackend`),
 * else `wasm`. When `wasm` cannot start it falls back to `cpu` — logging `backend.fallback` with
 * the reason, once — and stays on `cpu` for the isolate's life. A failure of `cpu` rejects, and
 * the next call tries again.
 */
export function ensureBackend(preferred?: BackendName): Promise<BackendName> {
  // workerd exposes `process.versions.node`, so tf.js takes it for Node and nags about tfjs-node,
  // which cannot run here. tf.js already chose its browser platform (WorkerGlobalScope exists).
  tf.env().set('IS_NODE', false)
  const wanted = preferred ?? configured ?? DEFAULT_BACKEND
  if (chosen?.wanted === wanted) return chosen.backend
  const attempt = { wanted, backend: activate(wanted) }
  chosen = attempt
  attempt.backend.catch(() => {
    if (chosen === attempt) chosen = undefined
  })
  return attempt.backend
}

/** Forgets the backend choice, so the next `ensureBackend` chooses again (tests). Initialised backends stay registered. */
export function resetBackendChoice(): void {
  chosen = undefined
  configured = undefined
}
