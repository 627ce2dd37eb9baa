/**
 * @module traffic/gate — a concurrency limit with a first-come-first-served queue: traffic control's
 * `max_concurrent` / `max_queue` per model and MAX_CONCURRENT / MAX_QUEUE per isolate (src/traffic/traffic.ts).
 */

/**
 * Milliseconds a waiter has to take up the slot it was handed. In workerd a request whose client
 * left is cancelled: its code never runs again, so a waiter handed a slot then never takes it up nor
 * frees it (measured: two such waiters left `max_concurrent: 2` answering 429 for good). Taking up a
 * slot is one promise continuation, well under a millisecond, or one inference's length behind a busy
 * isolate; past this bound the slot is given to the next request.
 */
export const CLAIM_TIMEOUT_MS = 5_000

/**
 * One request's place at a gate: waiting in its queue, then holding one of its slots, then gone.
 * `leave()` works in every state, synchronously: a slot is handed over inside the gate, not by the
 * continuation of the waiter's promise, so a request whose continuations never run again (its client
 * left and the runtime cancelled it) is not left holding a slot once its `leave()` is called.
 */
export class Place {
  state: 'waiting' | 'holding' | 'left'
  /** When the gate handed this place a slot, until its request's code takes it up (`claim`). */
  grantedAt: number | undefined
  /** Called when the gate took the slot back untaken: the request is gone, and its other places must go too. */
  onReclaimed: (() => void) | undefined
  /** Resolves when the place holds a slot; rejects with `leave(reason)`'s reason when it leaves first. */
  readonly ready: Promise<void>
  private settle!: { resolve: () => void; reject: (reason: unknown) => void }

  constructor(
    private readonly gate: Gate,
    holding: boolean,
  ) {
    this.state = holding ? 'holding' : 'waiting'
    this.ready = holding ? Promise.resolve() : new Promise((resolve, reject) => (this.settle = { resolve, reject }))
    // Whoever leaves a waiting place without awaiting `ready` must not get an unhandled rejection.
    this.ready.catch(() => {})
  }

  /** The gate handed this place a slot. */
  grant(now: number): void {
    this.state = 'holding'
    this.grantedAt = now
    this.settle.resolve()
  }

  /** The request's code takes up the slot it was handed: `false` if it came too late and the slot went to another. */
  claim(): boolean {
    if (this.state !== 'holding') return false
    this.grantedAt = undefined
    this.gate.claimed(this)
    return true
  }

  /** Frees the slot (the next waiter takes it) or the queue place; idempotent. */
  leave(reason: unknown = new Error('left the queue')): void {
    const was = this.state
    this.state = 'left'
    if (was === 'holding') {
      this.gate.claimed(this)
      this.gate.release()
    } else if (was === 'waiting') {
      this.gate.dequeue(this)
      this.settle.reject(reason)
    }
  }
}

/**
 * Slots for requests in flight, and a first-come-first-served queue for those waiting on one.
 * Limits may change while requests wait (a new config.json); a raised limit lets waiters in at once.
 */
export class Gate {
  inFlight = 0
  private readonly waiting: Place[] = []
  // Places handed a slot whose request has not taken it up yet (see CLAIM_TIMEOUT_MS).
  private readonly unclaimed = new Set<Place>()

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

  /** Takes a place: holding a slot at once, waiting in line (await `ready`), or `false` when the queue is full too. */
  enter(now = Date.now()): Place | false {
    this.sweep(now)
    // Behind anyone waiting, even when a slot is free: first come, first served.
    if (this.waiting.length === 0 && this.inFlight < this.limit) {
      this.inFlight++
      return new Place(this, true)
    }
    if (this.waiting.length >= this.queue) return false
    const place = new Place(this, false)
    this.waiting.push(place)
    return place
  }

  /** A holding place left: the longest waiter takes its slot. */
  release(): void {
    this.inFlight--
    this.pump()
  }

  /** A granted place was taken up by its request. */
  claimed(place: Place): void {
    this.unclaimed.delete(place)
  }

  /**
   * Takes back the slots handed to waiters that did not take them up within `claimMs` (their
   * requests were cancelled), and hands them on. Runs on every `enter`, and from the requests waiting
   * in line (src/traffic/traffic.ts), whose code is alive to run it.
   */
  sweep(now = Date.now(), claimMs = CLAIM_TIMEOUT_MS): void {
    for (const place of this.unclaimed) {
      if (now - place.grantedAt! < claimMs) continue
      this.unclaimed.delete(place)
      place.leave()
      place.onReclaimed?.()
    }
  }

  /** A waiting place left: out of the line. */
  dequeue(place: Place): void {
    const at = this.waiting.indexOf(place)
    if (at !== -1) this.waiting.splice(at, 1)
  }

  private pump(): void {
    while (this.waiting.length > 0 && this.inFlight < this.limit) {
      this.inFlight++
      const place = this.waiting.shift()!
      this.unclaimed.add(place)
      place.grant(Date.now())
    }
  }
}
