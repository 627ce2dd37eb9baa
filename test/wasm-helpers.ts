/** Helpers for tests that swap the wasm backend's instance. */
import { expect } from 'vitest'
import { ensureBackend, resetBackendChoice, tf } from '../src/runtime/tf'
import { bundledWasmModule, instantiateWasmBackend, setWasmModule } from '../src/runtime/wasm'
import type { GuardOptions } from '../src/runtime/wasm-guard'

/** Makes `wasm` a fresh instance of the bundled module with `options`, and the active backend. Undo with `setWasmModule()`. */
export async function useWasm(options: GuardOptions = {}) {
  expect(await tf.setBackend('cpu')).toBe(true)
  tf.removeBackend('wasm')
  tf.registerBackend('wasm', () => instantiateWasmBackend(bundledWasmModule, options), 0)
  expect(await tf.setBackend('wasm')).toBe(true)
}

/** Back to the bundled module's own instance, chosen as the Worker chooses it (an afterAll). */
export async function restoreWasm() {
  await tf.setBackend('cpu')
  setWasmModule()
  resetBackendChoice()
  await ensureBackend()
}
