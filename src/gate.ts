/**
 * @module gate — a concurrency limit with a first-come-first-served queue: traffic control's
 * `max_concurrent` / `max_queue` per model and MAX_CONCURRENT / MAX_QUEUE per isolate (src/traffic.ts).
 */

/**
 * Slots for requests in flight, and a first-come-first-served queue for those waiting on one.
 * Limits may change while requests wait (a new config.json); a raised limit lets waiters in at once.
 */
export class Gate {
  inFlight = 0
  private readonly waiting: Array<() => void> = []

  constructor(
    private limit = Infinity,
    private queue = Infinity,
  ) {}

  get queued(): number {
    return this.waiting.length
  }

  get limits(): { limit: number; queue: number } {
    return { limit: this.limit, queue: this.queue }
  }

  configure(limit: number, queue: number): void {
    this.limit = limit
    this.queue = queue
    this.pump()
  }

  /** Takes a slot: `true` at once, a promise resolved when it is this request's turn, or `false` when the queue is full too. */
  enter(): true | false | Promise<void> {
    // Behind anyone waiting, even when a slot is free: first come, first served.
    if (this.waiting.length === 0 && this.inFlight < this.limit) {
      this.inFlight++
      return true
    }
    if (this.waiting.length >= this.queue) return false
    return new Promise((resolve) => this.waiting.push(resolve))
  }

  /** Frees a slot; the longest waiter takes it. */
  leave(): void {
    this.inFlight--
    this.pump()
  }

  private pump(): void {
    while (this.waiting.length > 0 && this.inFlight < this.limit) {
      this.inFlight++
      this.waiting.shift()!()
    }
  }
}
