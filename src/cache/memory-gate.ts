/**
 * @module cache/memory-gate — the memory budget as the code that builds a request's inputs sees it: the
 * image decoders and the input transforms reserve their bytes through it before they allocate them.
 * A leaf module (it imports nothing), so the protocols reach the budget without importing the cache;
 * the isolate (src/isolate.ts) points it at its cache's admission (admission.ts `gate`).
 *
 * Two kinds of bytes:
 * - held for good: bytes a holder keeps between requests (decode.ts keeps no decoder heap between
 *   decodes, so it holds nothing);
 * - reserved for a while: one decode under way (its RGBA and the decoder's growth), one input's rows and
 *   their concatenation, released when they are disposed.
 */

/** What the budget offers the builders of inputs. */
export interface MemoryGate {
  /**
   * Reserves `bytes` until the returned function is called: evicts idle models, waits while runs and
   * loads under way may make room. Throws a 413 naming `what` when the bytes cannot fit the budget
   * even with every model evicted, a 503 when the models in use hold the room.
   */
  reserve(bytes: number, what: string): Promise<() => void>
  /** Holds `bytes` for `holder` for good (replacing what it held): an image decoder's resting heap. */
  hold(holder: object, bytes: number, what: string): Promise<void>
}

/** Outside an isolate with a cache (a unit test of a transform alone) nothing is counted. */
const uncounted: MemoryGate = {
  reserve: async () => () => {},
  hold: async () => {},
}

let current: MemoryGate = uncounted

/** The gate in use: the isolate's cache's, once the isolate is made. */
export const memoryGate = (): MemoryGate => current

/** Points the gate at a budget (src/isolate.ts, once per isolate). */
export function setMemoryGate(gate: MemoryGate): void {
  current = gate
}
