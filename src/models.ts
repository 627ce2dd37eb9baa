/** @module models — what routes call: resolve a request to a model version and lease it from the cache. */
import { r2Models, readConfig } from './config'
import type { Config, StringVars } from './config'
import { ModelUnavailableError } from './errors'
import { log } from './log'
import { recordLoad } from './metrics'
import { withBatching } from './runtime/batcher'
import { ModelCache } from './cache'
import type { CacheOptions, Lease, LoadResult } from './cache'
import { storeHandler } from './repository/model-files'
import { verifiedStore } from './repository/manifest'
import type { ManifestFile } from './repository/manifest'
import { refreshNow, servingRepository } from './repository/follow'
import type { RefreshDeps } from './repository/follow'
import { repository } from './repository/repository'
import type { Repository, ResolvedVersion, Selector } from './repository/repository'
import { buildServable } from './runtime/servable'
import { assetsStore, r2Store } from './repository/stores'
import type { ModelStore } from './repository/stores'

let shared: ModelCache | undefined

const cacheOptions = (config: Config): CacheOptions => ({
  budgetBytes: config.CACHE_BUDGET_BYTES,
  maxModels: config.MAX_MODELS_LOADED,
  backoffBaseMs: config.LOAD_BACKOFF_BASE_MS,
  backoffMaxMs: config.LOAD_BACKOFF_MAX_MS,
  onLoad: recordLoad,
})

/** The isolate's one cache, created on first use with the Worker's configuration. */
export function modelCache(config: Config): ModelCache {
  shared ??= new ModelCache(cacheOptions(config))
  return shared
}

/** Disposes every model and forgets the cache, so the next use builds a new one (tests). */
export function resetModelCache(): void {
  shared?.reset()
  shared = undefined
}

/** Where model files come from: the bundled static assets, and the R2 bucket when it is bound. */
export interface ModelSources {
  assets: ModelStore
  r2?: ModelStore
}

const sourcesOf = new WeakMap<object, ModelSources>()

/** The model sources of this Worker's bindings, made once per env object (every request asks, several times). */
export function modelSources(env: Env): ModelSources {
  let sources = sourcesOf.get(env)
  if (!sources) {
    const timeoutMs = readConfig(env).STORE_READ_TIMEOUT_MS
    sources = { assets: assetsStore(env.ASSETS, timeoutMs), ...(env.MODELS ? { r2: r2Store(env.MODELS, timeoutMs) } : {}) }
    sourcesOf.set(env, sources)
  }
  return sources
}

/** The bundled repository's store, where `_index.json` lives. */
export function modelStore(env: Env): ModelStore {
  return modelSources(env).assets
}

/** Runs `promise` after the response, where the runtime allows it (`ctx.waitUntil`). */
export type WaitUntil = (promise: Promise<unknown>) => void

function refreshDeps(env: Env, config: Config): RefreshDeps {
  const sources = modelSources(env)
  return {
    bucket: env.MODELS,
    allowed: r2Models(env),
    intervalMs: config.REFRESH_INTERVAL * 1000,
    cache: modelCache(config),
    load: (target) => loadVersion(sources, target),
  }
}

/**
 * The repository as this isolate serves it: the bundled index with the published R2 versions over
 * it. A failure to read the bundled index is the server's, so it answers 503; an unreadable R2
 * pointer is not a failure (bundled and already-applied versions keep serving).
 */
export async function openRepository(env: Env, config: Config, waitUntil?: WaitUntil): Promise<Repository> {
  let base: Repository
  try {
    base = await repository(modelStore(env))
  } catch (error) {
    throw new ModelUnavailableError(`model repository unavailable: ${(error as Error).message}`, 5, error)
  }
  return servingRepository(base, refreshDeps(env, config), waitUntil)
}

/** Re-reads the R2 pointer now and swaps to what it publishes (cron, admin reload). */
export async function refreshModels(env: Env, config: Config) {
  return refreshNow(await repository(modelStore(env)), refreshDeps(env, config))
}

/** Cache key of one model version. */
export const cacheKey = (name: string, version: number) => `${name}/${version}`

/**
 * Reads, builds and warms up one model version. R2 files are checked against the size and sha256
 * that validation recorded, so a file changed since then fails the load instead of being served.
 * With `batching` in the model's config.json, the servable merges concurrent requests (runtime/batcher.ts).
 */
export async function loadVersion(sources: ModelSources, target: ResolvedVersion): Promise<LoadResult> {
  const started = Date.now()
  const dir = cacheKey(target.name, target.version)
  let store = sources.assets
  if (target.entry.source === 'r2') {
    if (!sources.r2) throw new Error(`${dir} is in the R2 bucket, but no bucket is bound (MODELS)`)
    store = verifiedStore(sources.r2, dir, target.entry.files.filter((f): f is ManifestFile => 'sha256' in f))
  }
  const artifacts = await storeHandler(store, dir).load()
  const fetchMs = Date.now() - started
  const { servable, timings, warmedUp } = await buildServable(artifacts)
  if (!warmedUp) {
    log('warn', 'model.warmup_skipped', { model: dir, reason: 'an input has unknown dimensions' })
  }
  // Wrapped after warmup, so warmup runs the model alone and fills in output shapes the batcher checks.
  const batching = target.config.batching
  const served = batching
    ? withBatching(servable, { maxBatchSize: batching.max_batch_size, maxQueueDelayMs: batching.max_queue_delay_ms, model: dir })
    : servable
  return { servable: served, timings: { fetchMs, ...timings } }
}

/** A leased model together with the version it resolved to. */
export interface ModelLease {
  target: ResolvedVersion
  lease: Lease
}

/**
 * Resolves `name` (and a version or label, else the default version) and leases the model, loading
 * it on a miss. The caller must `lease.release()` when its inference is done.
 */
export async function leaseModel(env: Env, config: Config, name: string, selector: Selector | number = {}, waitUntil?: WaitUntil): Promise<ModelLease> {
  const target = (await openRepository(env, config, waitUntil)).resolve(name, selector)
  const sources = modelSources(env)
  const key = cacheKey(name, target.version)
  const load = () => loadVersion(sources, target)
  if ((env as StringVars).MODEL_CACHE === 'off') {
    // The benchmark's baseline: fetch, build and warm up per request, the pattern the cache exists
    // to avoid. A throwaway cache builds the model; retired at once, it is disposed on release.
    const once = new ModelCache(cacheOptions(config))
    const lease = await once.acquire(key, target.entry.weightBytes, load)
    once.drop(key, 'MODEL_CACHE is off')
    return { target, lease }
  }
  const lease = await modelCache(config).acquire(key, target.entry.weightBytes, load)
  return { target, lease }
}
