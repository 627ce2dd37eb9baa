/**
 * @module cache/model-cache — the warm-isolate model cache, the heart of warmserve.
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
 * - Bounded in real bytes (runtime/footprint.ts; the ledger in memory-ledger.ts): a load reserves its
 *   estimate before it starts, and waits (or gets 503) while other loads and runs leave no room; once
 *   built it is measured, refused (503, with the figures) if it cannot run one row within the budget,
 *   and holds its weights and kernel state. Every inference reserves its activations for its run: more
 *   rows than fit run in sub-batches that do, and a request of which one row cannot fit is a 413.
 *   Idle models are evicted least-recently-used to make room; leased models never are.
 * - Swaps preserve availability: a new version (or a fresh build of the same one) is built and
 *   warmed while the old one keeps serving; only then does the switch happen, and the old one is
 *   retired. A request holds one lease, so it is served wholly by one model.
 */
import { Admission, BudgetBusyError } from './admission'
import { backendBroken, guardedBackend, isAllocationFailure, isBackendFailure } from '../runtime/wasm-guard'
import { ApiError, ModelUnavailableError } from '../core/errors'
import { log } from '../core/log'
import { Lease, Resident, zeroCounters } from './lease'
import type { CacheCounters, CacheOutcome, LoadResult, ResidentInfo } from './lease'
import { memoryBytes, restingBytes } from '../runtime/footprint'
import { wrapRun } from '../runtime/servable'
import type { ModelFormat, Servable } from '../runtime/servable'
import type { Signature } from '../runtime/signature'
import type { tf } from '../runtime/tf'

export { Lease }
export type { CacheCounters, CacheOutcome, LoadResult, ResidentInfo }

/** The limits a Worker's vars set; `configure` changes them on a live cache. */
export interface CacheLimits {
  /** Bytes of memory models and their runs may hold at once (runtime/footprint.ts). */
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
  /** Told of every finished build (load or reload) and how long it took: the hook metrics and analytics observe. */
  onLoad?: (key: string, ms: number, built: { memoryBytes: number; reload: boolean }) => void
  /** Told of every failed load and how long it took before it failed (src/analytics/analytics.ts). */
  onLoadFailed?: (key: string, ms: number, message: string) => void
  /** Told of every model taken out of service: evicted, dropped or replaced by a reload (src/analytics/analytics.ts). */
  onUnload?: (key: string, reason: string, memoryBytes: number) => void
  /**
   * Called when a load cannot get wasm heap although every idle model is gone and nothing else is
   * loaded, leased or loading: the heap is fragmented (WebAssembly memory never shrinks). Replaces the
   * backend with a fresh instance and resolves true when it did; the load is then tried once more.
   */
  rebuildHeap?: (reason: string) => Promise<boolean>
  /**
   * Takes `bytes` of the requests' JavaScript pool (REQUEST_MEMORY_BYTES) at once if they are free, for a
   * run's inputs moved off the heap (cache/admission.ts); undefined when they are not. Absent: never.
   */
  reserveJavaScript?: (bytes: number) => (() => void) | undefined
}

/**
 * What a load reserves before its model is measured: per stored weight byte, float32 weights (twice a
 * float16 file) and the kernels' state (runtime/footprint.ts KERNEL_FACTOR), one row aside.
 */
const LOAD_ESTIMATE_PER_STORED_BYTE = 6

/** A model that cannot get its wasm heap even alone on a fresh heap: refused (503 with the figures), with a backoff. */
export class ModelTooLargeError extends Error {
  override name = 'ModelTooLargeError'
}

interface CacheEntry {
  state: 'LOADING' | 'AVAILABLE'
  promise: Promise<Resident>
  resident?: Resident
  /** Started by `preload`, and no acquire has claimed it yet: the first one counts its load as its own miss. */
  early?: boolean
}

interface Failure {
  attempts: number
  retryAt: number
  message: string
}

export class ModelCache {
  private readonly entries = new Map<string, CacheEntry>()
  private readonly retiring = new Set<Resident>()
  private readonly failures = new Map<string, Failure>()
  private readonly now: () => number
  private settings: CacheOptions
  /** The budget: what holds its bytes, and admission of loads and runs against it. */
  readonly admission: Admission
  counters: CacheCounters = zeroCounters()

  constructor(options: CacheOptions) {
    this.settings = options
    this.now = options.now ?? Date.now
    this.admission = new Admission(options.budgetBytes, {
      makeRoom: (bytes, key) => this.makeRoom(bytes, key),
      evictIdle: (except) => this.evictIdle(except, 'heap'),
      leases: () => this.leases(),
      reserveJavaScript: (bytes) => this.settings.reserveJavaScript?.(bytes),
    })
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
    if (
      limits.budgetBytes === budgetBytes &&
      limits.maxModels === maxModels &&
      limits.backoffBaseMs === backoffBaseMs &&
      limits.backoffMaxMs === backoffMaxMs
    )
      return
    this.settings = { ...this.settings, ...limits }
    this.admission.ledger.limit = limits.budgetBytes
  }

  /**
   * Leases the model under `key`, loading it with `load` if this isolate does not hold it yet.
   * @param bytes the model's stored weight bytes, known from the repository index before loading
   * @throws ModelUnavailableError (503) when the load fails or a recent failure's backoff has not passed
   */
  async acquire(key: string, bytes: number, load: () => Promise<LoadResult>): Promise<Lease> {
    const started = this.now()
    for (;;) {
      const entry = this.entries.get(key)
      if (entry?.early) {
        // Loaded ahead of this request, for it (`preload`): the load is its miss, as if it had started it.
        entry.early = false
        this.counters.misses++
        const resident = await entry.promise
        if (!resident.retired) return this.lease(resident, 'miss', this.now() - started)
        continue
      }
      if (entry?.resident) {
        this.counters.hits++
        return this.lease(entry.resident, 'hit', 0)
      }
      if (entry) {
        this.counters.joins++
        const resident = await entry.promise
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

  /**
   * Starts loading `key` without a lease, for a request that is about to ask for it (repository/follow.ts
   * loads what an isolate's first request wants while the R2 pointer is read): admitted, built, measured
   * and counted like any load, then resident and idle. The first `acquire` of it counts the load as its
   * miss. Nothing when the key is loaded, loading, or backing off after a failure. Never rejects: a
   * failed load is recorded (its backoff) and met by the request that asks.
   */
  preload(key: string, bytes: number, load: () => Promise<LoadResult>): Promise<void> {
    const failure = this.failures.get(key)
    if (this.entries.has(key) || (failure && this.now() < failure.retryAt)) return Promise.resolve()
    const entry = this.startLoad(key, bytes, load)
    entry.early = true
    return entry.promise.then(
      () => {},
      () => {},
    )
  }

  private startLoad(key: string, bytes: number, load: () => Promise<LoadResult>): CacheEntry {
    const entry: CacheEntry = { state: 'LOADING', promise: undefined as unknown as Promise<Resident> }
    const started = this.now()
    const ticket = { load: key }
    entry.promise = (async () => {
      try {
        const estimate = Math.min(bytes * LOAD_ESTIMATE_PER_STORED_BYTE, this.options.budgetBytes)
        await this.admission.reserve(ticket, 'load', estimate, `loading ${key}`, key)
        const resident = this.settle(key, await this.loadWithRoom(key, load), started, 'model.loaded', ticket)
        entry.state = 'AVAILABLE'
        entry.resident = resident
        this.failures.delete(key)
        this.counters.loads++
        return resident
      } catch (error) {
        if (this.entries.get(key) === entry) this.entries.delete(key)
        // No room now, with nothing under way to make some: not the model's fault, so no backoff.
        if (error instanceof BudgetBusyError) throw error
        // The heap was short while other models were leased, or the backend broke: no backoff either.
        if (isBackendFailure(error) && !(error instanceof ModelTooLargeError)) {
          const message = error instanceof Error ? error.message : String(error)
          log('warn', 'model.load_deferred', { model: key, error: message })
          throw new BudgetBusyError(
            `model ${key} could not be loaded now: ${message}; models in use hold the rest of the heap`,
          )
        }
        const attempts = (this.failures.get(key)?.attempts ?? 0) + 1
        const delay = Math.min(this.options.backoffBaseMs * 2 ** (attempts - 1), this.options.backoffMaxMs)
        const message = error instanceof Error ? error.message : String(error)
        this.failures.set(key, { attempts, retryAt: this.now() + delay, message })
        this.counters.loadFailures++
        log('error', 'model.load_failed', { model: key, attempts, retryInMs: delay, error: message })
        this.options.onLoadFailed?.(key, this.now() - started, message)
        throw new ModelUnavailableError(`model ${key} could not be loaded: ${message}`, delay / 1000, error)
      } finally {
        this.admission.ledger.release(ticket)
      }
    })()
    this.entries.set(key, entry)
    return entry
  }

  /** A model's load with room on the heap (withHeapRoom); too large alone on a fresh heap, it is refused. */
  private loadWithRoom(key: string, load: () => Promise<LoadResult>): Promise<LoadResult> {
    return this.withHeapRoom(
      { what: `loading ${key}`, except: key, evictReason: 'heap' },
      load,
      (why, cause) => new ModelTooLargeError(`it cannot be loaded ${why}`, { cause }),
    )
  }

  /**
   * Runs `build` (a model's load into the cache, or a candidate's validation outside it) with room on the
   * wasm heap. When it cannot get heap, idle models other than `except` are evicted, least recently used
   * first, and it runs again. With none left and nothing else held, the heap is rebuilt once
   * (`rebuildHeap`): WebAssembly memory never shrinks, and what earlier loads left may lie in pieces;
   * `fits`, where given, first says whether the heap's free space could hold the build at all. A build
   * that aborted a kernel (`Aborted()`: the backend is broken, the models built on it gone with it)
   * rebuilds it whatever else is held. Still short alone on a fresh heap: the error `tooLarge` makes of
   * why ("even alone on a fresh wasm heap of at most N bytes: …"), the backend left sound for what comes
   * next. What else fails (a heap held by others) is the caller's to judge.
   */
  async withHeapRoom<T>(
    { what, except = '', evictReason = what }: { what: string; except?: string; evictReason?: string },
    build: () => Promise<T>,
    tooLarge: (why: string, cause: unknown) => Error,
    fits?: (error: unknown) => boolean,
  ): Promise<T> {
    for (let rebuilt = false; ;) {
      try {
        return await build()
      } catch (error) {
        const broken = backendBroken() !== undefined
        if (!broken && !isAllocationFailure(error)) throw error
        if (!broken && this.evictIdle(except, evictReason)) continue
        const rebuild = this.settings.rebuildHeap
        if (!rebuild || !(broken || this.holdsNothing(except))) throw error
        const message = error instanceof Error ? error.message : String(error)
        if (rebuilt) {
          if (broken) await rebuild(`${what} broke it again: ${message}`)
          const max = guardedBackend()?.heap().maxBytes
          throw tooLarge(`even alone on a fresh wasm heap${max ? ` of at most ${max} bytes` : ''}: ${message}`, error)
        }
        if (!broken && fits && !fits(error)) throw error
        if (!(await rebuild(`${what}: ${message}`))) throw error
        rebuilt = true
      }
    }
  }

  /** Whether no model is resident, leased or loading here, but for the load of `key`. */
  holdsNothing(key = ''): boolean {
    return (
      this.admission.ledger.used('resident') === 0 &&
      this.leases() === 0 &&
      [...this.entries.keys()].every((k) => k === key)
    )
  }

  /** Evicts the least recently used idle model other than `except`; false when there is none. */
  evictIdle(except: string, reason: string): boolean {
    const idle = this.available()
      .filter((r) => r.leases === 0 && r.key !== except)
      .sort((a, b) => a.lastUsed - b.lastUsed)[0]
    if (!idle) return false
    this.counters.evictions++
    log('info', 'model.evicted', { model: idle.key, bytes: idle.bytes, reason })
    this.retire(idle, `evicted: ${reason}`)
    return true
  }

  /** Leases out on every model held, retiring ones included. */
  leases(): number {
    return [...this.available(), ...this.retiring].reduce((n, r) => n + r.leases, 0)
  }

  /**
   * Makes a built model resident: the bookkeeping a load and a reload share (its measured bytes, time,
   * log line, observer). A model that cannot run one row within the budget is disposed and refused.
   */
  private settle(
    key: string,
    { servable, timings }: LoadResult,
    started: number,
    event: string,
    ticket?: object,
  ): Resident {
    const f = servable.footprint
    const need = memoryBytes(f)
    if (need > this.options.budgetBytes) {
      servable.dispose()
      throw new Error(
        `it needs ${need} bytes with one row running (weights ${f.weightBytes} + kernels ${f.kernelBytes} + one row ${need - restingBytes(f)}), ` +
          `more than the cache budget of ${this.options.budgetBytes} bytes (CACHE_BUDGET_BYTES)`,
      )
    }
    const loadedAt = this.now()
    const resident = new Resident(key, servable, restingBytes(f), loadedAt, timings, loadedAt)
    resident.admitted = wrapRun(servable, (inputs) => this.admission.run(resident, inputs))
    // The measured bytes replace the load's estimate; when they are more, idle models make up the difference.
    if (ticket) this.admission.ledger.release(ticket)
    this.makeRoom(resident.bytes)
    this.admission.ledger.hold(resident, 'resident', resident.bytes)
    this.counters.loadMsTotal += loadedAt - started
    const { weightBytes, kernelBytes, activationBytes: intercept, rowBytes, measured, heapGrowthBytes } = f
    log('info', event, {
      model: key,
      bytes: resident.bytes,
      memoryBytes: need,
      storedBytes: servable.weightBytes,
      weightBytes,
      kernelBytes,
      activationBytes: intercept,
      rowBytes,
      measured,
      heapGrowthBytes,
      ms: loadedAt - started,
      ...timings,
    })
    this.options.onLoad?.(key, loadedAt - started, { memoryBytes: need, reload: event === 'model.reloaded' })
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
    // An idle model can be evicted now: whoever waits for room looks again.
    else if (resident.leases === 0) this.admission.ledger.changed()
  }

  private dispose(resident: Resident): void {
    if (resident.disposed) return
    resident.disposed = true
    this.retiring.delete(resident)
    resident.servable.dispose()
    this.admission.ledger.release(resident)
    this.counters.disposals++
    log('info', 'model.disposed', { model: resident.key, bytes: resident.bytes })
  }

  /** Takes a model out of service: new requests load it afresh; in-flight ones finish on it first. */
  private retire(resident: Resident, reason: string): void {
    if (this.entries.get(resident.key)?.resident === resident) this.entries.delete(resident.key)
    resident.retired = true
    this.options.onUnload?.(resident.key, reason, memoryBytes(resident.servable.footprint))
    if (resident.leases === 0) this.dispose(resident)
    else this.retiring.add(resident)
  }

  /** Evicts idle models, least recently used first, until `bytes` more (and, for a key not held yet, one more model) fit. */
  private makeRoom(bytes: number, key?: string): void {
    const idle = this.available()
      .filter((r) => r.leases === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed)
    const maxModels = this.options.maxModels ?? Infinity
    const models = () => this.entries.size + (key !== undefined && !this.entries.has(key) ? 1 : 0)
    const fits = () => this.admission.ledger.fits(bytes) && models() <= maxModels
    for (const resident of idle) {
      if (fits()) break
      this.counters.evictions++
      const reason = models() > maxModels ? 'max models' : 'budget'
      log('info', 'model.evicted', { model: resident.key, bytes: resident.bytes, reason })
      this.retire(resident, `evicted: ${reason}`)
    }
  }

  private available(): Resident[] {
    return [...this.entries.values()].flatMap((entry) => (entry.resident ? [entry.resident] : []))
  }

  /** Bytes models hold at rest in this isolate (weights and kernel state), retiring models included. */
  residentBytes(): number {
    return this.admission.ledger.used('resident')
  }

  /** Drops one model if it is loaded. Returns whether it was. */
  drop(key: string, reason: string): boolean {
    const resident = this.entries.get(key)?.resident
    if (!resident) return false
    this.counters.drops++
    log('info', 'model.dropped', { model: key, reason })
    this.retire(resident, `dropped: ${reason}`)
    return true
  }

  /**
   * Builds `key` afresh beside the copy that is serving, then switches to the new build and retires
   * the old one (disposed when its last lease ends). A failed build leaves the serving copy untouched.
   * When `key` is not loaded, this is a plain load.
   */
  async reload(key: string, bytes: number, load: () => Promise<LoadResult>): Promise<ResidentInfo> {
    const old = this.entries.get(key)?.resident
    if (!old) {
      const lease = await this.acquire(key, bytes, load)
      lease.release()
      return this.list().find((r) => r.key === key && r.state === 'AVAILABLE')!
    }
    const started = this.now()
    const ticket = { reload: key }
    let resident: Resident
    try {
      await this.admission.reserve(
        ticket,
        'load',
        Math.min(bytes * LOAD_ESTIMATE_PER_STORED_BYTE, this.options.budgetBytes),
        `reloading ${key}`,
        key,
      )
      const { servable, timings } = await load()
      const entry = this.entries.get(key)
      if (entry !== undefined && entry.resident !== old) {
        // Dropped and loaded again by a request while this build ran: that copy is as fresh as ours.
        servable.dispose()
        return this.list().find((r) => r.key === key)!
      }
      resident = this.settle(key, { servable, timings }, started, 'model.reloaded', ticket)
    } catch (error) {
      if (error instanceof ApiError) throw error
      throw new ModelUnavailableError(
        `model ${key} could not be reloaded: ${error instanceof Error ? error.message : String(error)}`,
        1,
        error,
      )
    } finally {
      this.admission.ledger.release(ticket)
    }
    this.entries.set(key, { state: 'AVAILABLE', promise: Promise.resolve(resident), resident })
    this.counters.reloads++
    if (!old.retired) this.retire(old, 'replaced: reloaded')
    return this.list().find((r) => r.key === key && r.state === 'AVAILABLE')!
  }

  /** Whether `key` is loaded and serving in this isolate. */
  isAvailable(key: string): boolean {
    return this.entries.get(key)?.resident !== undefined
  }

  /** The signature and measured memory of `key` if it is loaded here, without leasing it (metadata needs no inference). */
  signatureOf(key: string): { format: ModelFormat; signature: Signature; memoryBytes: number } | undefined {
    const servable = this.entries.get(key)?.resident?.servable
    return (
      servable && {
        format: servable.format,
        signature: servable.signature,
        memoryBytes: memoryBytes(servable.footprint),
      }
    )
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
  status(
    key: string,
  ): { state: 'AVAILABLE' | 'LOADING' } | { state: 'FAILED'; message: string; retryAt: number } | undefined {
    const entry = this.entries.get(key)
    if (entry) return { state: entry.state }
    const failure = this.failures.get(key)
    return failure ? { state: 'FAILED', message: failure.message, retryAt: failure.retryAt } : undefined
  }

  /** Every model this isolate holds or is loading. */
  list(): ResidentInfo[] {
    const loading = [...this.entries.entries()]
      .filter(([, entry]) => !entry.resident)
      .map(([key]): ResidentInfo => ({ key, state: 'LOADING', leases: 0, bytes: 0 }))
    const describe = (r: Resident, state: 'AVAILABLE' | 'RETIRED'): ResidentInfo => ({
      key: r.key,
      state,
      leases: r.leases,
      bytes: r.bytes,
      memoryBytes: memoryBytes(r.servable.footprint),
      footprint: { ...r.servable.footprint },
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
    this.entries.clear()
    this.retiring.clear()
    this.failures.clear()
    this.admission.ledger.clear()
    this.counters = zeroCounters()
  }
}
