/** Helpers for tests that swap the wasm backend's instance. */
import { afterAll, beforeAll, expect } from 'vitest'
import { isolate, resetIsolate } from '../../src/isolate'
import { tf } from '../../src/runtime/tf'
import { bundledWasmModule, instantiateWasmBackend } from '../../src/runtime/wasm'
import type { GuardOptions } from '../../src/runtime/wasm-guard'

/** Makes `wasm` a fresh instance of the bundled module with `options`, and the active backend. Undo with `restoreWasm()`. */
export async function useWasm(options: GuardOptions = {}) {
  expect(await tf.setBackend('cpu')).toBe(true)
  tf.removeBackend('wasm')
  tf.registerBackend('wasm', () => instantiateWasmBackend(bundledWasmModule, options), 0)
  expect(await tf.setBackend('wasm')).toBe(true)
}

/** Back to the bundled module's own instance, chosen as the Worker chooses it (an afterAll). */
export async function restoreWasm() {
  await tf.setBackend('cpu')
  const { backend } = isolate()
  backend.wasm.useModule()
  backend.forget()
  await backend.ensure()
}

/**
 * The calling suite starts and ends on a fresh isolate state with the bundled module's own wasm
 * instance under the default settings (a suite whose tests load real models and fill the heap).
 */
export function freshWasmIsolate(): void {
  beforeAll(resetWasmIsolate)
  afterAll(resetWasmIsolate)
}

/** A fresh isolate state on the bundled module's own wasm instance (an afterAll of a suite that changed either). */
export async function resetWasmIsolate(): Promise<void> {
  resetIsolate()
  await restoreWasm()
}
