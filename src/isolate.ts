/**
 * @module isolate — everything that lives as long as the isolate, in one object created on first use.
 *
 * A Worker isolate serves many requests, and what it keeps between them is this: the model cache,
 * the bundled repository's index, the R2 pointer it follows, the metrics it has recorded, the tf.js
 * backend and the clock. Every entry point — HTTP routes, the admin API, the cron handler — goes
 * through this object's small interface (`repository`, `lease`, `reload`, `unload`, `maintain`,
 * `status`, `ready`, and `traffic` for inference); so does the service-binding entrypoint (rpc.ts).
 * No other module keeps state of its own.
 *
 * Bindings are passed to each call, never kept: `env` says where model files come from and what the
 * limits are. A call with an `env` whose vars differ applies them to the live state — the cache's
 * budget, model count and backoff, the backend's name, the refresh interval — from that call on,
 * without dropping what is loaded. (In production every request of an isolate sees the same vars.)
 */
import { setMemoryGate } from './cache/memory-gate'
import { IsolateAnalytics } from './analytics/analytics'
import { ModelCache } from './cache/model-cache'
import type { CacheCounters, CacheLimits, LoadResult, ResidentInfo } from './cache/model-cache'
import { r2Models, readConfig } from './core/config'
import type { Config, StringVars } from './core/config'
import { ModelUnavailableError } from './core/errors'
import type { ModelLease, WaitUntil } from './cache/lease'
import { log } from './core/log'
import { keyLabels, Metrics } from './core/metrics'
import { PredictionCache } from './cache/prediction-cache'
import { prepareModel } from './protocols/images/classify'
import { PointerFollower } from './repository/follow'
import { EarlierLoads, loadVersion } from './repository/load'
import type { ModelSources } from './repository/load'
import type { FollowDeps, PointerStatus, Wanted } from './repository/follow'
import { publishVersions } from './repository/publish'
import type { PublishReport } from './repository/publish'
import { BundledIndex, cacheKey } from './repository/repository'
import type { Repository, ResolvedVersion, Selector } from './repository/repository'
import { assetsStore, r2Store } from './repository/stores'
import { wasmHeapBytes } from './runtime/footprint'
import type { ModelFormat } from './runtime/servable'
import { dtypeFromTensorFlow } from './runtime/signature'
import type { Signature, TensorSpec } from './runtime/signature'
import { Backend, tf } from './runtime/tf'
import { backendBroken } from './runtime/wasm-guard'
import { TrafficControl } from './traffic/traffic'
import type { BackendName } from './runtime/tf'

export type { ModelLease, WaitUntil }

/** What one maintenance pass (the cron) did. */
export interface MaintenanceReport {
  dropped: string[]
  models: number | null
  indexError?: string
  /** What the R2 pass did; absent when no bucket is bound or R2_MODELS is empty. */
  publish?: PublishReport
  publishError?: string
  numTensors: number
  numBytes: number
}

/** This isolate's cache as the admin API and `/metrics` show it. */
export interface IsolateStatus {
  models: ResidentInfo[]
  /** Bytes models hold at rest (weights and kernel state). */
  residentBytes: number
  /** Bytes reserved by loads and runs in progress. */
  reservedBytes: number
  /** The most bytes the budget has had held at once. */
  budgetHighWaterBytes: number
  budgetBytes: number
  /** The wasm heap (WebAssembly memory, which never shrinks): its size and the largest seen; absent on the cpu backend. */
  wasmHeap?: { bytes: number; highWaterBytes: number }
  counters: CacheCounters
  memory: { numTensors: number; numBytes: number }
  pointer: PointerStatus
}

const cacheLimits = (config: Config): CacheLimits => ({
  budgetBytes: config.CACHE_BUDGET_BYTES,
  maxModels: config.MAX_MODELS_LOADED,
  backoffBaseMs: config.LOAD_BACKOFF_BASE_MS,
  backoffMaxMs: config.LOAD_BACKOFF_MAX_MS,
})

export class Isolate {
  readonly metrics = new Metrics()
  readonly cache: ModelCache
  /** Answers kept on the Workers Cache API for models with `response_cache` (src/predict.ts uses it). */
  readonly predictions: PredictionCache
  /** Version splits, shadow runs and admission limits per model: every prediction goes through `traffic.serve` (from predict.ts). */
  readonly traffic = new TrafficControl(this)
  /** The isolate's part of the fleet view (src/analytics/analytics.ts): its start, and the loads and unloads not yet written. */
  readonly analytics: IsolateAnalytics
  private readonly index = new BundledIndex()
  private readonly pointer: PointerFollower
  // Stores of each env object, made once (every request asks, several times).
  private readonly sources = new WeakMap<object, ModelSources>()
  // What this isolate's builds learned by warming up: a version loaded again is not warmed up again (repository/load.ts).
  private readonly earlierLoads = new EarlierLoads()
  private heapHighWater = 0
  // A rebuild of a broken wasm backend in progress: every caller waits on the same one.
  private recovering: Promise<void> | undefined
  // Why the wasm backend's heap is being replaced, while it is: readiness says so.
  private rebuilding: string | undefined

  /**
   * @param backend tf.js's backend; tf.js's engine is process-wide, so a test that starts a new
   *   isolate state hands over the old one's
   * @param now the clock of the cache, the pointer and the cron; tests pass their own
   */
  constructor(
    readonly backend: Backend = new Backend(),
    readonly now: () => number = Date.now,
  ) {
    const analytics = (this.analytics = new IsolateAnalytics(
      now,
      () => this.cache.residentBytes(),
      () => tf.getBackend() ?? '',
    ))
    this.cache = new ModelCache({
      ...cacheLimits(readConfig({})),
      now,
      onLoad: (key, ms, built) => {
        this.metrics.recordLoad(key, ms)
        analytics.loaded(key, ms, built)
      },
      onLoadFailed: (key, ms, message) => analytics.loadFailed(key, ms, message),
      onUnload: (key, reason, memoryBytes) => analytics.unloaded(key, reason, memoryBytes),
      rebuildHeap: (reason) => this.rebuildHeap(reason),
      reserveJavaScript: (bytes) => this.traffic.memory.tryReserve(bytes),
    })
    // Image decodes and input rows reserve their bytes in this cache's budget (cache/memory-gate.ts).
    setMemoryGate(this.cache.admission.gate)
    this.pointer = new PointerFollower(now)
    this.predictions = new PredictionCache(now)
  }

  /** Applies `env`'s vars to the live state and returns them. Cheap: the vars are parsed once per env object. */
  private settings(env: Env): Config {
    const config = readConfig(env)
    this.cache.configure(cacheLimits(config))
    this.backend.configure((env as StringVars).TF_BACKEND)
    return config
  }

  private sourcesOf(env: Env): ModelSources {
    let sources = this.sources.get(env)
    if (!sources) {
      const timeoutMs = readConfig(env).STORE_READ_TIMEOUT_MS
      sources = {
        assets: assetsStore(env.ASSETS, timeoutMs),
        ...(env.MODELS ? { r2: r2Store(env.MODELS, timeoutMs) } : {}),
      }
      this.sources.set(env, sources)
    }
    return sources
  }

  private followDeps(env: Env, config: Config): FollowDeps {
    const sources = this.sourcesOf(env)
    return {
      bucket: env.MODELS,
      allowed: r2Models(env),
      intervalMs: config.REFRESH_INTERVAL * 1000,
      readTimeoutMs: config.POINTER_READ_TIMEOUT_MS,
      cache: this.cache,
      load: (target) => this.load(sources, target),
    }
  }

  /** Reads, builds and warms up one model version (repository/load.ts), on this isolate's backend and clock. */
  private load(sources: ModelSources, target: ResolvedVersion): Promise<LoadResult> {
    return loadVersion(sources, target, this.backend, this.now, prepareModel, this.earlierLoads)
  }

  /**
   * Starts the backend once: the Worker's module evaluation does (src/index.ts, with the `env` of
   * `cloudflare:workers`), else an isolate's first prediction, so that it comes up while the index
   * and the pointer are read; the load that needs it awaits the same start (runtime/tf.ts `ensure`).
   */
  startBackend(env: Env): void {
    if (this.backendStarted) return
    this.backendStarted = true
    this.settings(env)
    this.backend.ensure().catch(() => {})
  }
  private backendStarted = false

  /**
   * The repository as this isolate serves it: the bundled index with the published R2 versions over
   * it. A failure to read the bundled index is the server's, so it answers 503; an unreadable R2
   * pointer is not a failure (bundled and already-applied versions keep serving). `wanted`, the
   * model a request asks for, is loaded while an isolate's first pointer read is under way, when the
   * bundled index has it (repository/follow.ts `serving`).
   */
  async repository(env: Env, waitUntil?: WaitUntil, wanted?: Wanted): Promise<Repository> {
    const config = this.settings(env)
    const follow = this.followDeps(env, config)
    // An isolate's first request reads the R2 pointer while it reads the index.
    this.pointer.prefetch(follow)
    let base: Repository
    try {
      base = await this.index.read(this.sourcesOf(env).assets)
    } catch (error) {
      throw new ModelUnavailableError(`model repository unavailable: ${(error as Error).message}`, 5, error)
    }
    // With the cache off (the benchmark's baseline) nothing is kept, so there is nothing to load early.
    const early = (env as StringVars).MODEL_CACHE === 'off' ? undefined : wanted
    return this.pointer.serving(base, follow, waitUntil, early)
  }

  /**
   * Resolves `name` (and a version or label, else the default version) and leases the model, loading
   * it on a miss. The caller must `lease.release()` when its inference is done.
   */
  async lease(env: Env, name: string, selector: Selector = {}, waitUntil?: WaitUntil): Promise<ModelLease> {
    return this.leaseVersion(env, (await this.repository(env, waitUntil)).resolve(name, selector))
  }

  /** Leases a version already resolved (traffic control routed it), loading it on a miss: no second resolution. */
  async leaseVersion(env: Env, target: ResolvedVersion): Promise<ModelLease> {
    if (backendBroken()) await this.recover(env)
    const { name } = target
    const sources = this.sourcesOf(env)
    const key = cacheKey(name, target.version)
    const load = () => this.load(sources, target)
    if ((env as StringVars).MODEL_CACHE === 'off') {
      // The benchmark's baseline: fetch, build and warm up per request, the pattern the cache exists
      // to avoid. A throwaway cache builds the model; retired at once, it is disposed on release.
      const once = new ModelCache({
        ...this.cache.options,
        onLoad: undefined,
        onLoadFailed: undefined,
        onUnload: undefined,
      })
      const lease = await once.acquire(key, target.entry.weightBytes, load)
      once.drop(key, 'MODEL_CACHE is off')
      return { target, lease }
    }
    return { target, lease: await this.cache.acquire(key, target.entry.weightBytes, load) }
  }

  /**
   * A version's signature without loading it: the model is loaded here; or its index entry holds the
   * signature tf.js itself works out — an R2 version's (from its validation build), a bundled layers
   * model's (scripts/build/build-index.mjs builds the topology), or a bundled graph model's signature block
   * from its model.json (names, TensorFlow dtypes, shapes as declared; warmup may refine an output's
   * unknown dimensions once it loads). A graph model without a signature block declares no outputs:
   * `undefined`, load to know.
   */
  knownSignature(
    target: ResolvedVersion,
  ): { format: ModelFormat; signature: Signature; memoryBytes?: number } | undefined {
    const loaded = this.cache.signatureOf(cacheKey(target.name, target.version))
    if (loaded) return loaded
    const { format, signature } = target.entry
    const declared = signature as { inputs?: unknown; outputs?: unknown } | null
    if (!Array.isArray(declared?.inputs) || !Array.isArray(declared.outputs)) return undefined
    const spec = (s: Partial<TensorSpec>): TensorSpec | undefined => {
      const dtype = dtypeFromTensorFlow(s.dtype) ?? s.dtype
      if (!s.name || !dtype) return undefined
      // A graph's tensor name: `node:0` for a node named as its signature key, as tf.js names it.
      const tensorName =
        s.tensorName ?? (format === 'graph-model' ? (s.name.includes(':') ? s.name : `${s.name}:0`) : s.name)
      return { name: s.name, tensorName, dtype: dtype as TensorSpec['dtype'], shape: s.shape ?? null }
    }
    const inputs = (declared.inputs as Partial<TensorSpec>[]).map(spec)
    const outputs = (declared.outputs as Partial<TensorSpec>[]).map(spec)
    if (inputs.includes(undefined) || outputs.includes(undefined) || outputs.length === 0) return undefined
    return { format, signature: { inputs: inputs as TensorSpec[], outputs: outputs as TensorSpec[] } }
  }

  /** Re-reads the R2 pointer now and swaps to what it publishes (cron, admin reload). */
  async follow(env: Env): Promise<PointerStatus> {
    const config = this.settings(env)
    const base = await this.index.read(this.sourcesOf(env).assets)
    return this.pointer.followNow(base, this.followDeps(env, config))
  }

  /**
   * Follows the R2 pointer now, then builds the model's default version afresh beside the one serving
   * and switches (admin reload).
   */
  async reload(
    env: Env,
    name: string,
  ): Promise<{ target: ResolvedVersion; resident: ResidentInfo; pointer: PointerStatus }> {
    const pointer = await this.follow(env)
    const target = (await this.repository(env)).resolve(name)
    const sources = this.sourcesOf(env)
    const resident = await this.cache.reload(cacheKey(name, target.version), target.entry.weightBytes, () =>
      this.load(sources, target),
    )
    return { target, resident, pointer }
  }

  /** Drops every loaded version of `name`, or one; in-flight requests finish first. Unknown names and versions are 404. */
  async unload(env: Env, name: string, version?: number, waitUntil?: WaitUntil): Promise<string[]> {
    ;(await this.repository(env, waitUntil)).resolve(name, version === undefined ? {} : { version })
    if (version === undefined) return this.cache.unload(name, 'unloaded by an admin')
    return this.cache.drop(cacheKey(name, version), 'unloaded by an admin') ? [cacheKey(name, version)] : []
  }

  /**
   * One maintenance pass, the cron's: drops models idle longer than MODEL_IDLE_TTL_SECONDS, re-reads
   * the bundled index, validates new R2 versions and publishes the pointer, then follows it here too.
   */
  async maintain(env: Env): Promise<MaintenanceReport> {
    const config = this.settings(env)
    if (backendBroken()) await this.recover(env)
    const dropped = this.cache.dropIdle(config.MODEL_IDLE_TTL_SECONDS * 1000)
    let models: number | null = null
    let indexError: string | undefined
    let base: Repository | undefined
    try {
      base = await this.index.reread(this.sourcesOf(env).assets)
      models = base.names().length
    } catch (error) {
      indexError = (error as Error).message
    }
    const published = base ? await this.publish(env, base) : {}
    const { numTensors, numBytes } = tf.memory()
    const report: MaintenanceReport = {
      dropped,
      models,
      ...published,
      numTensors,
      numBytes,
      ...(indexError ? { indexError } : {}),
    }
    log(indexError || published.publishError ? 'error' : 'info', 'cron.maintenance', { ...report })
    return report
  }

  /** Validates new R2 versions and publishes the pointer, then follows it in this isolate. */
  private async publish(env: Env, base: Repository): Promise<{ publish?: PublishReport; publishError?: string }> {
    const allowed = r2Models(env)
    if (!env.MODELS || (allowed !== '*' && allowed.size === 0)) return {}
    try {
      // Candidates are validated by building them, on the backend that serves them.
      await this.backend.ensure()
      const sources = this.sourcesOf(env)
      const report = await publishVersions({
        bucket: env.MODELS,
        base,
        allowed,
        cache: this.cache,
        load: (t) => this.load(sources, t),
        knownSignature: (t) => this.knownSignature(t),
        earlierLoads: this.earlierLoads,
      })
      await this.follow(env)
      return { publish: report }
    } catch (error) {
      // R2 down or slow: nothing is published, every isolate keeps what it serves, the next run retries.
      return { publishError: (error as Error).message }
    }
  }

  /**
   * Rebuilds a broken wasm backend (runtime/wasm-guard.ts: a trap escaped from a kernel, so its heap
   * cannot be trusted) and the models that were loaded on it, without a redeploy: the models are
   * dropped (in-flight requests on them fail; their disposal touches nothing), a fresh instance
   * replaces the backend, and each model is loaded again. Concurrent callers share one rebuild.
   */
  private recover(env: Env, fragmented?: string): Promise<void> {
    this.recovering ??= (async () => {
      const reason = backendBroken() ?? `heap fragmented: ${fragmented}`
      const keys = this.cache.unload(undefined, 'the wasm backend is rebuilt')
      log('error', 'backend.rebuilding', { reason, models: keys })
      await this.backend.wasm.rebuild()
      const repository = await this.repository(env)
      const sources = this.sourcesOf(env)
      for (const key of keys) {
        const { model, version } = keyLabels(key)
        try {
          const target = repository.resolve(model, { version: Number(version) })
          const lease = await this.cache.acquire(key, target.entry.weightBytes, () => this.load(sources, target))
          lease.release()
        } catch (error) {
          log('warn', 'backend.reload_failed', { model: key, error: (error as Error).message })
        }
      }
      log('info', 'backend.rebuilt', { models: keys })
    })().finally(() => {
      this.recovering = undefined
    })
    return this.recovering
  }

  /**
   * Replaces a sound wasm backend whose heap is too fragmented to load a model it held before (the
   * cache calls this once nothing is loaded, leased or loading: WebAssembly memory never shrinks, so
   * only a fresh instance has the room back). False off the wasm backend.
   */
  private async rebuildHeap(reason: string): Promise<boolean> {
    if (tf.getBackend() !== 'wasm' || this.rebuilding !== undefined) return false
    this.rebuilding = reason
    const heap = wasmHeapBytes()
    const broken = backendBroken()
    log('warn', 'backend.rebuilding', {
      reason: broken ? `broken: ${broken}; ${reason}` : `heap fragmented: ${reason}`,
      heapBytes: heap,
    })
    try {
      // A broken backend's models cannot run any more: they go (and load again on their next request).
      if (broken) this.cache.unload(undefined, 'the wasm backend is rebuilt')
      await this.backend.wasm.rebuild()
      log('info', 'backend.rebuilt', { heapBytesBefore: heap, heapBytes: wasmHeapBytes() })
      return true
    } finally {
      this.rebuilding = undefined
    }
  }

  /**
   * Rebuilds the wasm backend when it broke (an `Aborted()` in a kernel) or, `fragmented` saying why,
   * when its heap had no block for one row of the only model it held; reloads what it held. A no-op otherwise.
   */
  async repairBackend(env: Env, fragmented?: string): Promise<void> {
    if (backendBroken() || fragmented !== undefined) await this.recover(env, fragmented)
  }

  /**
   * Readiness: the backend is up and sound, and the repository can be read. Rejects with the reason
   * otherwise; a broken wasm backend is rebuilt in the background (`waitUntil`), so readiness recovers.
   */
  async ready(env: Env, waitUntil?: WaitUntil): Promise<{ backend: BackendName; models: number }> {
    this.settings(env)
    if (this.rebuilding !== undefined) throw new Error(`the wasm backend's heap is being rebuilt (${this.rebuilding})`)
    const broken = backendBroken()
    if (broken) {
      const rebuild = this.recover(env).catch((error: unknown) =>
        log('error', 'backend.rebuild_failed', { error: (error as Error).message }),
      )
      waitUntil?.(rebuild)
      throw new Error(`the wasm backend failed: ${broken}; it is being rebuilt`)
    }
    const [backend, repository] = await Promise.all([this.backend.ensure(), this.repository(env, waitUntil)])
    return { backend, models: repository.names().length }
  }

  /** What this isolate holds: every version loaded or loading, bytes, counters, tf.js memory, the pointer. */
  status(env: Env): IsolateStatus {
    this.settings(env)
    const { numTensors, numBytes } = tf.memory()
    const heap = wasmHeapBytes()
    if (heap !== undefined) this.heapHighWater = Math.max(this.heapHighWater, heap)
    const { ledger } = this.cache.admission
    return {
      models: this.cache.list(),
      residentBytes: this.cache.residentBytes(),
      reservedBytes: ledger.used() - ledger.used('resident'),
      budgetHighWaterBytes: ledger.highWater,
      budgetBytes: this.cache.options.budgetBytes,
      ...(heap !== undefined ? { wasmHeap: { bytes: heap, highWaterBytes: this.heapHighWater } } : {}),
      counters: this.cache.counters,
      memory: { numTensors, numBytes },
      pointer: this.pointer.status(),
    }
  }

  /** Disposes every model at once, leases or not (tests). */
  dispose(): void {
    this.cache.reset()
  }
}

// The one mutable binding of module scope: the isolate's state, made on first use — which the
// Worker's module evaluation is (src/index.ts); making it does no I/O, which global scope forbids.
let current: Isolate | undefined

/** The isolate's state, created on first use. */
export function isolate(): Isolate {
  current ??= new Isolate()
  return current
}

/**
 * Starts over with a fresh state, as a new isolate would (tests): every model disposed, the index,
 * the pointer and the metrics forgotten. The tf.js backend is handed over, since tf.js's engine is
 * process-wide. `now` sets the clock of the new state.
 */
export function resetIsolate(options: { now?: () => number } = {}): Isolate {
  const backend = current?.backend
  current?.dispose()
  current = new Isolate(backend, options.now)
  return current
}
