/** Helpers for tests that swap the wasm backend's instance. */
import { afterAll, beforeAll, expect } from 'vitest'
import { isolate, resetIsolate } from '../../src/isolate'
import { tf } from '../../src/runtime/tf'
import { bundledWasmModule, instantiateWasmBackend } from '../../src/runtime/wasm'
import type { GuardOptions } from '../../src/runtime/wasm-guard'
import { guardedBackend, isAllocationFailure } from '../../src/runtime/wasm-guard'

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

const MiB = 1024 * 1024

/**
 * Fragments the wasm heap as loads and evictions leave it: fills it up to its cap with `holeBytes`
 * blocks, each followed by a `pinBytes` one, then frees the first of each pair. Most of the free space
 * is then in pieces no larger than `holeBytes`, held apart by the pins. Pins as large as the holes
 * take no smaller free fragment (which would leave the holes side by side, to merge): use them on a
 * heap that has run a model. `release` gives the pins back (a no-op on the old instance once the
 * backend is rebuilt).
 */
export function fragmentHeap(
  holeBytes = 4 * MiB,
  pinBytes = 64 * 1024,
): {
  freeBytes: number
  largestFreeBytes: number
  release(): void
} {
  const backend = guardedBackend()!
  const holes: tf.Tensor[] = []
  const pins: tf.Tensor[] = []
  for (;;) {
    try {
      holes.push(tf.zeros([holeBytes / 4]))
      pins.push(tf.zeros([pinBytes / 4]))
    } catch (error) {
      if (!isAllocationFailure(error)) throw error
      break
    }
  }
  tf.dispose(holes)
  const { bytes, maxBytes } = backend.heap()
  // Grown to the cap, or as near as the heap grows by what is asked: where the next hole no longer fit.
  expect(maxBytes - bytes).toBeLessThan(holeBytes + 2 * 65_536)
  const probe = backend.fillFree()
  probe.release()
  // The largest block the heap can give now, in powers of two.
  let largestFreeBytes = 0
  for (let size = 64 * MiB; size >= 4096 && largestFreeBytes === 0; size /= 2) {
    try {
      tf.zeros([size / 4]).dispose()
      largestFreeBytes = size
    } catch (error) {
      if (!isAllocationFailure(error)) throw error
    }
  }
  return {
    freeBytes: probe.bytes,
    largestFreeBytes,
    release: () => tf.dispose(pins),
  }
}
