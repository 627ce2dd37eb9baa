/** @module model/models — what routes call: resolve a request to a model version and lease it from the cache. */
import type { Config } from '../config'
import { ModelUnavailableError } from '../errors'
import { log } from '../log'
import { ModelCache } from './cache'
import type { Lease, LoadResult } from './cache'
import { storeHandler } from './io'
import { repository } from './repository'
import type { Repository, ResolvedVersion } from './repository'
import { buildServable } from './servable'
import { assetsStore } from './store'
import type { ModelStore } from './store'

let shared: ModelCache | undefined

/** The isolate's one cache, created on first use with the Worker's configuration. */
export function modelCache(config: Config): ModelCache {
  shared ??= new ModelCache({
    budgetBytes: config.CACHE_BUDGET_BYTES,
    backoffBaseMs: config.LOAD_BACKOFF_BASE_MS,
    backoffMaxMs: config.LOAD_BACKOFF_MAX_MS,
  })
  return shared
}

/** Disposes every model and forgets the cache, so the next use builds a new one (tests). */
export function resetModelCache(): void {
  shared?.reset()
  shared = undefined
}

/** The model repository this Worker serves from. */
export function modelStore(env: Env): ModelStore {
  return assetsStore(env.ASSETS)
}

/** The repository index; a failure to read it is the server's, so it answers 503. */
export async function openRepository(store: ModelStore): Promise<Repository> {
  try {
    return await repository(store)
  } catch (error) {
    throw new ModelUnavailableError(`model repository unavailable: ${(error as Error).message}`, 5, error)
  }
}

/** Cache key of one model version. */
export const cacheKey = (name: string, version: number) => `${name}/${version}`

/** Reads, builds and warms up one model version. */
export async function loadVersion(store: ModelStore, target: ResolvedVersion): Promise<LoadResult> {
  const started = Date.now()
  const artifacts = await storeHandler(store, cacheKey(target.name, target.version)).load()
  const fetchMs = Date.now() - started
  const { servable, timings, warmedUp } = await buildServable(artifacts)
  if (!warmedUp) {
    log('warn', 'model.warmup_skipped', { model: cacheKey(target.name, target.version), reason: 'an input has unknown dimensions' })
  }
  return { servable, timings: { fetchMs, ...timings } }
}

/** A leased model together with the version it resolved to. */
export interface ModelLease {
  target: ResolvedVersion
  lease: Lease
}

/**
 * Resolves `name` (and `version`, else the highest) and leases the model, loading it on a miss.
 * The caller must `lease.release()` when its inference is done.
 */
export async function leaseModel(env: Env, config: Config, name: string, version?: number): Promise<ModelLease> {
  const store = modelStore(env)
  const target = (await openRepository(store)).resolve(name, version)
  const lease = await modelCache(config).acquire(cacheKey(name, target.version), target.entry.weightBytes, () =>
    loadVersion(store, target),
  )
  return { target, lease }
}
