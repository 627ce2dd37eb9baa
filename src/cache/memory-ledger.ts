/**
 * @module cache/memory-ledger — the cache's byte budget as a ledger: who holds how many bytes, and waiting
 * for room. Only src/cache/model-cache.ts uses it; the cache decides what to evict and what to refuse.
 *
 * Five kinds of holdings, all in bytes the isolate spends (runtime/footprint.ts):
 * - `resident`: a loaded model's weights and kernel state, for as long as it is held;
 * - `load`: a load in progress, its estimate reserved before it starts (so concurrent loads cannot
 *   together pass the budget), replaced by the measured figure when it is admitted;
 * - `run`: one inference's activations, for the length of the run;
 * - `decoder`: an image decoder's wasm heap once it has started, for good (memory-gate.ts);
 * - `input`: a request's inputs while they are built (decodes, rows, their concatenation), then the input
 *   tensors until their run is admitted or waits for room, or they are disposed; held by a request that
 *   holds a lease (memory-gate.ts).
 */

export type Holding = 'resident' | 'load' | 'run' | 'decoder' | 'input'

export class MemoryLedger {
  private readonly held = new Map<object, { kind: Holding; bytes: number }>()
  private wakers: Array<() => void> = []
  /** The most bytes held at once. */
  highWater = 0

  constructor(public limit: number) {}

  /** Bytes held, of one kind or of all. */
  used(kind?: Holding): number {
    let n = 0
    for (const h of this.held.values()) if (kind === undefined || h.kind === kind) n += h.bytes
    return n
  }

  /**
   * Loads and runs in progress: holdings that end without anyone's help. Inputs are not among them: a
   * request building its inputs holds a lease, which is counted as such.
   */
  transient(): number {
    let n = 0
    for (const h of this.held.values()) if (h.kind === 'load' || h.kind === 'run') n++
    return n
  }

  fits(bytes: number): boolean {
    return this.used() + bytes <= this.limit
  }

  /** Records (or replaces) what `holder` holds. The caller has checked that it fits, or knowingly passes the limit. */
  hold(holder: object, kind: Holding, bytes: number): void {
    this.held.set(holder, { kind, bytes })
    this.highWater = Math.max(this.highWater, this.used())
    this.changed()
  }

  bytesOf(holder: object): number {
    return this.held.get(holder)?.bytes ?? 0
  }

  release(holder: object): void {
    if (this.held.delete(holder)) this.changed()
  }

  /** Wakes everyone waiting for room: something was released, or a lease ended and made a model evictable. */
  changed(): void {
    const wakers = this.wakers
    this.wakers = []
    for (const wake of wakers) wake()
  }

  /** Resolves at the next change. */
  next(): Promise<void> {
    return new Promise((resolve) => this.wakers.push(resolve))
  }

  clear(): void {
    this.held.clear()
    this.highWater = 0
    this.changed()
  }
}
