/**
 * @module cache/lease — what the cache hands out and reports: a resident model, the lease that holds it for one
 * inference, and the counters and descriptions status pages show. The lifecycle is src/cache/model-cache.ts's.
 */
import type { ResolvedVersion } from '../repository/repository'
import type { Footprint } from '../runtime/footprint'
import type { Servable } from '../runtime/servable'

/** How the model cache served a lease: it held the model, loaded it, or joined a load in flight. */
export type CacheOutcome = 'hit' | 'miss' | 'joined'

/** Runs `promise` after the response, where the runtime allows it (`ctx.waitUntil`). */
export type WaitUntil = (promise: Promise<unknown>) => void

/** A leased model together with the version it resolved to. */
export interface ModelLease {
  target: ResolvedVersion
  lease: Lease
}

/** What a loader hands the cache: the built, warmed-up model and how long each step took. */
export interface LoadResult {
  servable: Servable
  timings: Record<string, number>
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

export class Resident {
  leases = 0
  retired = false
  disposed = false
  /** The servable leases hand out: its runs are admitted against the budget. */
  admitted!: Servable
  /** The first request's measurement, for a model whose warmup could not run. */
  measuring?: Promise<void>
  constructor(
    readonly key: string,
    readonly servable: Servable,
    readonly bytes: number,
    readonly loadedAt: number,
    readonly timings: Record<string, number>,
    public lastUsed: number,
  ) {}
}

/** Runs `use` with `held`, then releases its lease, whether `use` resolves or throws. */
export async function holding<H extends { lease: Lease }, T>(held: H, use: (held: H) => Promise<T>): Promise<T> {
  try {
    return await use(held)
  } finally {
    held.lease.release()
  }
}

/** A hold on a model for the length of one inference. `release()` must be called exactly once. */
export class Lease {
  private released = false
  // What `model` hands out instead of the resident's servable, when traffic control watches this lease's runs.
  private view: Servable | undefined
  constructor(
    private readonly cache: { releaseResident(resident: Resident): void },
    private readonly resident: Resident,
    readonly outcome: CacheOutcome,
    /** Milliseconds this request waited for a load (0 on a hit). */
    readonly waitedMs: number,
  ) {}

  get model(): Servable {
    if (this.released) throw new Error(`lease on ${this.resident.key} used after release`)
    return this.view ?? this.resident.admitted
  }

  /** From now on `model` hands out `wrap(model)`: src/traffic/traffic.ts sees a shadowed request's inputs and outputs so. */
  wrapModel(wrap: (model: Servable) => Servable): void {
    this.view = wrap(this.resident.admitted)
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
  /** Bytes held at rest: weights and kernel state (0 while loading). */
  bytes: number
  /** Bytes with one row running: what `warmserve_model_memory_bytes` reports. */
  memoryBytes?: number
  footprint?: Footprint
  lastUsed?: number
  loadedAt?: number
  timings?: Record<string, number>
}

export const zeroCounters = (): CacheCounters => ({
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
