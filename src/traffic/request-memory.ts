/**
 * @module traffic/request-memory — the JavaScript memory the requests in flight may hold together
 * (REQUEST_MEMORY_BYTES): their bodies, the numbers parsed from them, their typed copies. Each
 * request reserves what its body can cost before the body is read, from its Content-Length and type,
 * and gives it back when its answer is ready; a request that does not fit waits, first come first
 * served. Small requests (iris: a few hundred bytes) pass at once; the largest JSON bodies run one at a
 * time. Without it, each request's transients were bounded but their sum was not (docs/memory.md,
 * "Requests' JavaScript, in total").
 */

/**
 * Bytes of JavaScript memory per byte of a JSON body, at most: the body itself (1), and the packed
 * reader's numbers as float32, one buffer for all the body's tensors (4 bytes a number, and a number
 * takes at least 2 bytes of JSON, `0,`: 2). A float32 input uses the reader's numbers as they are; an
 * input whose dtype or range check needs JSON.parse's doubles (an int32 input, `input_limits`) writes its
 * values over its own numbers' float32 slots (protocols/tensors.ts), the doubles handed over one by one.
 * It was 5, with that input's own typed array (2) beside the numbers. Measured in workerd (docs/memory.md).
 */
export const JSON_BYTES_FACTOR = 3
/**
 * A binary body (the v2 binary extension, a raw tensor): the bytes and one float32 copy of them. A raw
 * image body: the bytes and the copy handed to its decoder. Its decoded pixels are the decode's, which
 * runs one at a time and is bounded apart (DECODE_IN_FLIGHT_MAX_BYTES): reserving them here, before the
 * body is read, would make every image request wait behind a slow upload of another.
 */
export const BINARY_BYTES_FACTOR = 2

/** What a request may cost, from its headers, before its body is read. */
export interface BodyCost {
  /** Content-Length, when declared; a chunked body counts as `maxBodyBytes` bytes, whatever its type. */
  declared: number | undefined
  contentType: string | undefined
  maxBodyBytes: number
}

/** The JavaScript bytes a request with this body may hold while it is served. */
export function requestMemoryBytes({ declared, contentType, maxBodyBytes }: BodyCost): number {
  // A chunked body's size is known only once it has arrived, and reserving its worst case (the whole
  // pool) would queue every other request behind it while it arrives: it reserves its own bytes at
  // most, not what it parses to (docs/memory.md says what that leaves).
  if (declared === undefined || !Number.isSafeInteger(declared) || declared < 0) return maxBodyBytes
  const bytes = Math.min(declared, maxBodyBytes)
  const type = contentType?.split(';')[0]?.trim().toLowerCase() ?? ''
  if (type.startsWith('image/') || type === 'application/octet-stream' || type.startsWith('application/vnd.'))
    return BINARY_BYTES_FACTOR * bytes
  return JSON_BYTES_FACTOR * bytes
}

interface Waiter {
  bytes: number
  /** Whether its bytes are counted in `used`. */
  held: boolean
  grant: () => void
}

/** A pool of bytes, handed out first come first served. */
export class RequestMemory {
  /** Bytes reserved by the requests in flight. */
  used = 0
  private readonly waiting: Waiter[] = []

  constructor(private capacity: number) {}

  /** Sets the pool's size (REQUEST_MEMORY_BYTES, read per request); a larger pool lets waiters in at once. */
  configure(capacity: number): void {
    if (capacity === this.capacity) return
    this.capacity = capacity
    for (const waiter of this.waiting) waiter.bytes = Math.min(waiter.bytes, capacity)
    this.grantWaiting()
  }

  /** The pool's size, in bytes. */
  get size(): number {
    return this.capacity
  }

  /** Requests waiting for room. */
  get queued(): number {
    return this.waiting.length
  }

  /**
   * Reserves `bytes` (at most the whole pool: a request larger than it runs alone) until the returned
   * function is called; waits behind earlier requests while there is no room. `signal` aborting takes
   * the request out of the line, or gives its bytes back: a request whose client left may never run
   * its own code again.
   */
  async reserve(bytes: number, signal?: AbortSignal): Promise<() => void> {
    return this.tryReserve(bytes, signal) ?? this.waitFor(bytes, signal)
  }

  /**
   * Reserves `bytes` at once when nobody waits and they fit (the common case: a small request), else
   * `undefined` and nothing reserved; `signal` as `reserve`'s. No promise, so a request that fits pays
   * no turn of the event loop for it.
   */
  tryReserve(bytes: number, signal?: AbortSignal): (() => void) | undefined {
    if (signal?.aborted) throw signal.reason
    const size = Math.max(0, Math.min(bytes, this.capacity))
    if (this.waiting.length > 0 || this.used + size > this.capacity) return undefined
    this.used += size
    let released = false
    const release = () => {
      signal?.removeEventListener('abort', release)
      if (released) return
      released = true
      this.used -= size
      this.grantWaiting()
    }
    signal?.addEventListener('abort', release)
    return release
  }

  /** Waits in line for `bytes` (see `reserve`). */
  private async waitFor(bytes: number, signal?: AbortSignal): Promise<() => void> {
    const waiter: Waiter = { bytes: Math.max(0, Math.min(bytes, this.capacity)), held: false, grant: () => {} }
    let released = false
    const release = () => {
      signal?.removeEventListener('abort', release)
      if (released) return
      released = true
      const index = this.waiting.indexOf(waiter)
      if (index !== -1) this.waiting.splice(index, 1)
      if (waiter.held) this.used -= waiter.bytes
      this.grantWaiting()
    }
    signal?.addEventListener('abort', release)
    await new Promise<void>((resolve, reject) => {
      waiter.grant = resolve
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true })
      this.waiting.push(waiter)
    })
    return release
  }

  /** Hands room to the waiters at the head of the line, in order, while it lasts. */
  private grantWaiting(): void {
    while (this.waiting.length > 0 && this.used + this.waiting[0]!.bytes <= this.capacity) {
      const next = this.waiting.shift()!
      this.used += next.bytes
      next.held = true
      next.grant()
    }
  }
}
