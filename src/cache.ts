/**
 * @module cache — the warm-isolate model cache, the heart of warmserve.
 *
 * Lifecycle of one (model, version) in this isolate:
 *
 *   absent ──acquire──► LOADING ──build + warmup ok──► AVAILABLE ──drop / evict / unload──► retired ──last lease ends──► disposed
 *                          │                                 │
 *                          │                                 └─reload: a fresh build beside it, then switch ──► the old one retired
 *                          └─fails─► absent, with a backoff: acquires before `retryAt` get 503 without a new load
 *
 * - Lazy and singleflight: the first acquire starts the load; concurrent ones join its promise,
 *   so there is exactly one build per key per isolate.
 * - Leases: every inference holds one. Dropping a model retires it; it is disposed when its last
 *   lease ends, so no request ever sees a disposed model.
 * - Bounded: before a load, idle models are evicted least-recently-used until the new model's
 *   weights fit the byte budget. Leased models are never evicted.
 * - Swaps preserve availability: a new version (or a fresh build of the same one) is built and
 *   warmed while the old one keeps serving; only then does the switch happen, and the old one is
 *   retired. A request holds one lease, so it is served wholly by one model.
 */
import { ModelUnavailableError } from './errors'
import { log } from './log'
import type { ModelFormat, Servable } from './runtime/servable'
import type { Signature } from './runtime/signature'

export type CacheOutcome = 'hit' | 'miss' | 'joined'

/** What a loader hands the cache: the built, warmed-up model and how long each step took. */
export interface LoadResult {
  servable: Servable
  timings: Record<string, number>
}

/** The limits a Worker's vars set; `configure` changes them on a live cache. */
export interface CacheLimits {
  /** Weight bytes kept before idle models are evicted. */
  budgetBytes: number
  /** Models held at once (loaded or loading); idle ones are evicted LRU to make room, like bytes. */
  maxModels?: number
  /** Wait after the first failed load; doubles with each further failure … */
  backoffBaseMs: number
  /** … up to this bound. */
  backoffMaxMs: number
}

export interface CacheOptions extends CacheLimits {
  /** The clock; tests may pass their own. */
  now?: () => number
  /** Told of every finished build (load or reload) and how long it took: the hook metrics observe. */
  onLoad?: (key: string, ms: number) => void
}

export interface CacheCounters {
  hits: number
  misses: number
  joins: number
  loads: number
  loadFailures: number
  loadMsTotal: number
  evictions: number
  drops: number
  disposals: number
  reloads: number
}

class Resident {
  leases = 0
  retired = false
  disposed = false
  constructor(
    readonly key: string,
    readonly servable: Servable,
    readonly bytes: number,
    readonly loadedAt: number,
    readonly timings: Record<string, number>,
    public lastUsed: number,
  ) {}
}

interface Slot {
  state: 'LOADING' | 'AVAILABLE'
  promise: Promise<Resident>
  resident?: Resident
}

interface Failure {
  attempts: number
  retryAt: number
  message: string
}

/** A hold on a model for the length of one inference. `release()` must be called exactly once. */
export class Lease {
  private released = false
  constructor(
    private readonly cache: ModelCache,
    private readonly resident: Resident,
    readonly outcome: CacheOutcome,
    /** Milliseconds this request waited for a load (0 on a hit). */
    readonly waitedMs: number,
  ) {}

  get model(): Servable {
    if (this.released) throw new Error(`lease on ${this.resident.key} used after release`)
    return this.resident.servable
  }

  get key(): string {
    return this.resident.key
  }

  release(): void {
    if (this.released) return
    this.released = true
    this.cache.releaseResident(this.resident)
  }
}

/** A model as this isolate holds it, for status pages and tests. */
export interface ResidentInfo {
  key: string
  state: 'LOADING' | 'AVAILABLE' | 'RETIRED'
  leases: number
  bytes: number
  lastUsed?: number
  loadedAt?: number
  timings?: Record<string, number>
}

const zeroCounters = (): CacheCounters => ({
  hits: 0,
  misses: 0,
  joins: 0,
  loads: 0,
  loadFailures: 0,
  loadMsTotal: 0,
  evictions: 0,
  drops: 0,
  disposals: 0,
  reloads: 0,
})

export class ModelCache {
  private readonly slots = new Map<string, Slot>()
  private readonly retiring = new Set<Resident>()
  private readonly failures = new Map<string, Failure>()
  private readonly now: () => number
  private settings: CacheOptions
  counters: CacheCounters = zeroCounters()

  constructor(options: CacheOptions) {
    this.settings = options
    this.now = options.now ?? Date.now
  }

  get options(): Readonly<CacheOptions> {
    return this.settings
  }

  /**
   * Applies new limits (a Worker whose vars changed). They bind from the next admission and the next
   * failure on: nothing is evicted or forgiven at once, and the clock and the load hook stay.
   */
  configure(limits: CacheLimits): void {
    const { budgetBytes, maxModels, backoffBaseMs, backoffMaxMs } = this.settings
    if (limits.budgetBytes === budgetBytes && limits.maxModels === maxModels && limits.backoffBaseMs === backoffBaseMs && limits.backoffMaxMs === backoffMaxMs) return
    this.settings = { ...this.settings, ...limits }
  }

  /**
   * Leases the model under `key`, loading it with `load` if this isolate does not hold it yet.
   * @param bytes the model's weight bytes, known from the repository index before loading
   * @throws ModelUnavailableError (503) when the load fails or a recent failure's backoff has not passed
   */
  async acquire(key: string, bytes: number, load: () => Promise<LoadResult>): Promise<Lease> {
    const started = this.now()
    for (;;) {
      const slot = this.slots.get(key)
      if (slot?.resident) {
        this.counters.hits++
        return this.lease(slot.resident, 'hit', 0)
      }
      if (slot) {
        this.counters.joins++
        const resident = await slot.promise
        // A drop may have retired it between the load finishing and this continuation: go round again.
        if (!resident.retired) return this.lease(resident, 'joined', this.now() - started)
        continue
      }
      const failure = this.failures.get(key)
      if (failure && this.now() < failure.retryAt) {
        throw new ModelUnavailableError(
          `model ${key} could not be loaded: ${failure.message}`,
          (failure.retryAt - this.now()) / 1000,
        )
      }
      this.counters.misses++
      const resident = await this.startLoad(key, bytes, load).promise
      if (!resident.retired) return this.lease(resident, 'miss', this.now() - started)
    }
  }

  private startLoad(key: string, bytes: number, load: () => Promise<LoadResult>): Slot {
    const slot: Slot = { state: 'LOADING', promise: undefined as unknown as Promise<Resident> }
    const started = this.now()
    slot.promise = (async () => {
      try {
        if (bytes > this.options.budgetBytes) {
          throw new Error(`its weights (${bytes} bytes) exceed the cache budget (${this.options.budgetBytes} bytes)`)
        }
        this.makeRoom(bytes)
        const resident = this.admit(key, bytes, await load(), started, 'model.loaded')
        slot.state = 'AVAILABLE'
        slot.resident = resident
        this.failures.delete(key)
        this.counters.loads++
        return resident
      } catch (error) {
        if (this.slots.get(key) === slot) this.slots.delete(key)
        const attempts = (this.failures.get(key)?.attempts ?? 0) + 1
        const delay = Math.min(this.options.backoffBaseMs * 2 ** (attempts - 1), this.options.backoffMaxMs)
        const message = error instanceof Error ? error.message : String(error)
        this.failures.set(key, { attempts, retryAt: this.now() + delay, message })
        this.counters.loadFailures++
        log('error', 'model.load_failed', { model: key, attempts, retryInMs: delay, error: message })
        throw new ModelUnavailableError(`model ${key} could not be loaded: ${message}`, delay / 1000, error)
      }
    })()
    this.slots.set(key, slot)
    return slot
  }

  /** Makes a built model resident: the bookkeeping a load and a reload share (time, log line, observer). */
  private admit(key: string, bytes: number, { servable, timings }: LoadResult, started: number, event: string): Resident {
    const loadedAt = this.now()
    const resident = new Resident(key, servable, servable.weightBytes || bytes, loadedAt, timings, loadedAt)
    this.counters.loadMsTotal += loadedAt - started
    log('info', event, { model: key, bytes: resident.bytes, ms: loadedAt - started, ...timings })
    this.options.onLoad?.(key, loadedAt - started)
    return resident
  }

  private lease(resident: Resident, outcome: CacheOutcome, waitedMs: number): Lease {
    resident.leases++
    resident.lastUsed = this.now()
    return new Lease(this, resident, outcome, waitedMs)
  }

  /** Called by Lease.release(). */
  releaseResident(resident: Resident): void {
    resident.leases--
    resident.lastUsed = this.now()
    if (resident.retired && resident.leases === 0) this.dispose(resident)
  }

  private dispose(resident: Resident): void {
    if (resident.disposed) return
    resident.disposed = true
    this.retiring.delete(resident)
    resident.servable.dispose()
    this.counters.disposals++
    log('info', 'model.disposed', { model: resident.key, bytes: resident.bytes })
  }

  /** Takes a model out of service: new requests load it afresh; in-flight ones finish on it first. */
  private retire(resident: Resident): void {
    if (this.slots.get(resident.key)?.resident === resident) this.slots.delete(resident.key)
    resident.retired = true
    if (resident.leases === 0) this.dispose(resident)
    else this.retiring.add(resident)
  }

  /** Evicts idle models, least recently used first, until `bytes` more (and, for a new key, one more model) fit. */
  private makeRoom(bytes: number, newKey = true): void {
    const idle = this.available()
      .filter((r) => r.leases === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed)
    const maxModels = this.options.maxModels ?? Infinity
    const models = () => this.slots.size + (newKey ? 1 : 0)
    const fits = () => this.residentBytes() + bytes <= this.options.budgetBytes && models() <= maxModels
    for (const resident of idle) {
      if (fits()) break
      this.counters.evictions++
      const reason = models() > maxModels ? 'max models' : 'budget'
      log('info', 'model.evicted', { model: resident.key, bytes: resident.bytes, reason })
      this.retire(resident)
    }
  }

  private available(): Resident[] {
    return [...this.slots.values()].flatMap((slot) => (slot.resident ? [slot.resident] : []))
  }

  /** Weight bytes held by this isolate, retiring models included. */
  residentBytes(): number {
    return [...this.available(), ...this.retiring].reduce((n, r) => n + r.bytes, 0)
  }

  /** Drops one model if it is loaded. Returns whether it was. */
  drop(key: string, reason: string): boolean {
    const resident = this.slots.get(key)?.resident
    if (!resident) return false
    this.counters.drops++
    log('info', 'model.dropped', { model: key, reason })
    this.retire(resident)
    return true
  }

  /**
   * Builds `key` afresh beside the copy that is serving, then switches to the new build and retires
   * the old one (disposed when its last lease ends). A failed build leaves the serving copy untouched.
   * When `key` is not loaded, this is a plain load.
   */
  async reload(key: string, bytes: number, load: () => Promise<LoadResult>): Promise<ResidentInfo> {
    const old = this.slots.get(key)?.resident
    if (!old) {
      const lease = await this.acquire(key, bytes, load)
      lease.release()
      return this.list().find((r) => r.key === key && r.state === 'AVAILABLE')!
    }
    const started = this.now()
    this.makeRoom(bytes, false)
    const { servable, timings } = await load()
    const slot = this.slots.get(key)
    if (slot !== undefined && slot.resident !== old) {
      // Dropped and loaded again by a request while this build ran: that copy is as fresh as ours.
      servable.dispose()
      return this.list().find((r) => r.key === key)!
    }
    const resident = this.admit(key, bytes, { servable, timings }, started, 'model.reloaded')
    this.slots.set(key, { state: 'AVAILABLE', promise: Promise.resolve(resident), resident })
    this.counters.reloads++
    if (!old.retired) this.retire(old)
    return this.list().find((r) => r.key === key && r.state === 'AVAILABLE')!
  }

  /** Whether `key` is loaded and serving in this isolate. */
  isAvailable(key: string): boolean {
    return this.slots.get(key)?.resident !== undefined
  }

  /** The signature of `key` if it is loaded here, without leasing it (metadata needs no inference). */
  signatureOf(key: string): { format: ModelFormat; signature: Signature } | undefined {
    const servable = this.slots.get(key)?.resident?.servable
    return servable && { format: servable.format, signature: servable.signature }
  }

  /** Drops every loaded version of model `name` (keys `name/<version>`), or of every model; returns their keys. */
  unload(name: string | undefined, reason: string): string[] {
    const keys = this.available()
      .map((r) => r.key)
      .filter((key) => name === undefined || key.slice(0, key.lastIndexOf('/')) === name)
    for (const key of keys) this.drop(key, reason)
    return keys
  }

  /** Drops every model unused for longer than `ttlMs`; returns their keys. */
  dropIdle(ttlMs: number): string[] {
    const cutoff = this.now() - ttlMs
    const idle = this.available().filter((r) => r.leases === 0 && r.lastUsed < cutoff)
    for (const resident of idle) this.drop(resident.key, `idle for more than ${ttlMs} ms`)
    return idle.map((r) => r.key)
  }

  /** The state of one key: loaded, loading, or its last failure. */
  status(key: string): { state: 'AVAILABLE' | 'LOADING' } | { state: 'FAILED'; message: string; retryAt: number } | undefined {
    const slot = this.slots.get(key)
    if (slot) return { state: slot.state }
    const failure = this.failures.get(key)
    return failure ? { state: 'FAILED', message: failure.message, retryAt: failure.retryAt } : undefined
  }

  /** Every model this isolate holds or is loading. */
  list(): ResidentInfo[] {
    const loading = [...this.slots.entries()]
      .filter(([, slot]) => !slot.resident)
      .map(([key]): ResidentInfo => ({ key, state: 'LOADING', leases: 0, bytes: 0 }))
    const describe = (r: Resident, state: 'AVAILABLE' | 'RETIRED'): ResidentInfo => ({
      key: r.key,
      state,
      leases: r.leases,
      bytes: r.bytes,
      lastUsed: r.lastUsed,
      loadedAt: r.loadedAt,
      timings: r.timings,
    })
    return [
      ...this.available().map((r) => describe(r, 'AVAILABLE')),
      ...[...this.retiring].map((r) => describe(r, 'RETIRED')),
      ...loading,
    ]
  }

  /** Disposes everything at once, leases or not, and zeroes the counters. For tests only. */
  reset(): void {
    for (const resident of [...this.available(), ...this.retiring]) this.dispose(resident)
    this.slots.clear()
    this.retiring.clear()
    this.failures.clear()
    this.counters = zeroCounters()
  }
}
