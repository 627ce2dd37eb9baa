/**
 * @module cache/memory-gate — the memory budget as the code that builds a request's inputs sees it: the
 * image decoders and the input builders (numbers, images, texts) reserve their bytes through it before
 * they allocate them. A leaf module (it imports nothing), so the protocols reach the budget without
 * importing the cache; the isolate (src/isolate.ts) points it at its cache's admission (admission.ts `gate`).
 *
 * Two kinds of bytes:
 * - held for good: bytes a holder keeps between requests (decode.ts keeps no decoder heap between
 *   decodes, so it holds nothing);
 * - reserved for a while: one decode under way (its RGBA and the decoder's growth), one input's rows and
 *   their concatenation while they are made, then the input tensor itself (`reserveTensor`) until the
 *   run that uses it is admitted or it is disposed; the batcher's merged copy of its requests' inputs
 *   for the length of the merged run (`reserveNow`).
 */

/** Ends a reservation; with `keep`, holds that many of its bytes on and releases the rest. */
export type Release = (keep?: number) => void

/** What the budget offers the builders of inputs. */
export interface MemoryGate {
  /**
   * Reserves `bytes` until the returned function is called: evicts idle models, waits while runs and
   * loads under way may make room. Throws a 413 naming `what` when the bytes cannot fit the budget
   * even with every model evicted, a 503 when the models in use hold the room. `onHeap`: the bytes are
   * tensors on tf.js's wasm heap, which must have them too (idle models are evicted until it has).
   */
  reserve(bytes: number, what: string, onHeap?: boolean): Promise<Release>
  /**
   * Reserves `bytes` now if they fit once idle models are evicted, else `undefined`: no wait and no
   * refusal, for a copy its caller can do without (the batcher's merged inputs: its requests, whose runs
   * hold the room it would wait for, then run one by one instead).
   */
  reserveNow(bytes: number, what: string, onHeap?: boolean): Release | undefined
  /** Holds `bytes` for `holder` for good (replacing what it held): an image decoder's resting heap. */
  hold(holder: object, bytes: number, what: string): Promise<void>
}

/** Outside an isolate with a cache (a unit test of a transform alone, a test's own reference decode) nothing is counted. */
export const uncounted: MemoryGate = {
  reserve: async () => () => {},
  reserveNow: () => () => {},
  hold: async () => {},
}

let current: MemoryGate = uncounted

/** The gate in use: the isolate's cache's, once the isolate is made. */
export const memoryGate = (): MemoryGate => current

/** Points the gate at a budget (src/isolate.ts, once per isolate). */
export function setMemoryGate(gate: MemoryGate): void {
  current = gate
}

/** A tensor as this module sees it (tf.Tensor, without importing tf.js). */
interface Disposable {
  dispose(): void
}

/** An input tensor's reservation, by tensor: its bytes and its release (once). */
const held = new WeakMap<object, { bytes: number; release: () => void }>()

/**
 * Reserves `bytes` of an input tensor, or of what building it takes, before it is built (`reserve`
 * with `onHeap`). `keep(tensor)` then holds the tensor's own bytes on and releases the rest: until the
 * run that uses it is admitted (`handOver`: a run's figure was measured with its rows' inputs in it, so
 * the run's reservation takes their place) or until the tensor is disposed, whichever comes first.
 * `release()` ends it when the build fails.
 */
export async function reserveTensor(
  bytes: number,
  what: string,
): Promise<{ keep<T extends Disposable>(tensor: T, bytes: number): T; release(): void }> {
  let end: Release | undefined = await memoryGate().reserve(bytes, what, true)
  const release = () => {
    end?.()
    end = undefined
  }
  return {
    release,
    keep(tensor, own) {
      end?.(own)
      const done = () => {
        held.delete(tensor)
        release()
      }
      held.set(tensor, { bytes: own, release: done })
      // Released by whoever disposes the tensor (predict's feeds, a failed build's cleanup): tf.js has no
      // disposal hook, and a reservation outliving its tensor would shrink the budget for good.
      const dispose = tensor.dispose
      tensor.dispose = function (this: typeof tensor) {
        dispose.call(this)
        done()
      }
      return tensor
    },
  }
}

/** Builds an input tensor of `bytes` (`build` makes it synchronously) after reserving them; see `reserveTensor`. */
export async function reservedTensor<T extends Disposable>(bytes: number, what: string, build: () => T): Promise<T> {
  const reservation = await reserveTensor(bytes, what)
  try {
    return reservation.keep(build(), bytes)
  } catch (error) {
    reservation.release()
    throw error
  }
}

/** Bytes the tensors' reservations still hold (inputs not yet handed over to a run). */
export function heldBytes(tensors: Iterable<object>): number {
  let n = 0
  for (const t of tensors) n += held.get(t)?.bytes ?? 0
  return n
}

/** Ends the tensors' reservations: the run admitted with them counts them now (cache/admission.ts). */
export function handOver(tensors: Iterable<object>): void {
  for (const t of tensors) held.get(t)?.release()
}
