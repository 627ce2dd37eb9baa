/**
 * @module predict — the one place a prediction goes through, whoever asks: the TF Serving and Open
 * Inference Protocol routes, `:classify`, and the service-binding entrypoint (rpc.ts).
 *
 * Each caller brings a way to read its body; from there on the path is the same: traffic control
 * routes the request and takes its slots (once, here), the body is read, the routed version is
 * leased (loading it on a miss), the feeds are built against it, the prediction cache is looked in,
 * the model runs, the answer is shaped and stored, the lease and the slots are released. Per-model
 * rules that apply to every prediction belong in `predict`.
 */
import type { RequestRecord } from './analytics/analytics'
import { isolate } from './isolate'
import type { Isolate } from './isolate'
import { HeapFragmentedError, heapShortError } from './cache/admission'
import { holding } from './cache/lease'
import type { ModelLease, WaitUntil } from './cache/lease'
import type { KeyInput, PredictionCacheOutcome } from './cache/prediction-cache'
import { predictionKey, tensorInputs, versionDigest } from './cache/prediction-cache'
import { preparedOf } from './protocols/images/classify'
import type { Selector } from './repository/repository'
import { rowsOf } from './runtime/sub-batches'
import { tf } from './runtime/tf'
import { backendBroken, findAllocation, isAllocationFailure } from './runtime/wasm-guard'
import { ApiError } from './core/errors'
import { log } from './core/log'

/** Who asks, and what of theirs the prediction needs: bindings, background work, cache preferences. */
export interface Caller {
  env: Env
  waitUntil?: WaitUntil
  /** The host an HTTP request came to: `*.workers.dev` has no Cache API. */
  host?: string
  /** `Cache-Control: no-cache` (or the RPC option `cache: false`): run the model, then refresh the entry. */
  noCache?: boolean
  /** The request's headers, for the model's traffic split (its `sticky_header`). */
  header?: (name: string) => string | undefined
  /** The request's id, for the shadow run's log line. */
  requestId?: string
  /** The request's analytics point (src/analytics/analytics.ts), when the dataset is bound: the prediction notes what it found. */
  record?: RequestRecord
  /** Aborts when the client is gone: traffic control then gives up the request's slots (src/traffic/traffic.ts). */
  signal?: AbortSignal
  /** An HTTP body still to be read (its Content-Length and Content-Type): what it reserves of REQUEST_MEMORY_BYTES. */
  body?: { length: string | undefined; type: string | undefined }
}

/** One protocol's part of a prediction: its feeds, its answer's shape. */
export interface PredictionSpec<T> {
  /** The outputs the answer holds (checked first: a request naming an unknown one is refused before its inputs are parsed). */
  outputs(held: ModelLease): string[]
  /** Builds the model's inputs from the parsed request into `feeds` (disposed by `predict`, also on failure). */
  feeds(held: ModelLease, feeds: Record<string, tf.Tensor>): Promise<void>
  /**
   * What identifies the inputs for the prediction cache when it is cheaper than the feeds (an encoded
   * image's bytes, before decoding): then the feeds are built only on a miss. Checks what `feeds`
   * would check first, so a bad request is refused the same either way. By default, the feeds.
   */
  keyInputs?(held: ModelLease): Record<string, KeyInput>
  /** The answer's shape, part of the cache key: `tf-serving-rows`, `v2`, `classify;top_k=5`… */
  format(held: ModelLease): string
  /** The answer from the model's outputs; stored as is when the model has a prediction cache. */
  answer(held: ModelLease, outputs: Record<string, tf.Tensor>, names: string[]): Promise<T>
}

export interface Prediction<T> {
  value: T
  /** The model and version that answered (its lease is released by the time the caller sees it). */
  held: ModelLease
  /** The model's run time; absent when the cache answered. */
  inferMs?: number
  /** `hit` or `miss` for a model with `response_cache`; absent for one without. */
  cache?: PredictionCacheOutcome
}

/** Leases a model for the length of `use`, always releasing it. */
export async function withLease<T>(
  caller: Caller,
  name: string,
  selector: Selector,
  use: (held: ModelLease) => Promise<T>,
): Promise<T> {
  return holding(await isolate().lease(caller.env, name, selector, caller.waitUntil), use)
}

/**
 * The one place a prediction goes through. Traffic control (src/traffic/traffic.ts: the model's split, its
 * `max_concurrent`/`max_queue` and the isolate's, its shadow run) routes the request and takes its
 * slots before `read` reads the body — so a request reading its body is already in flight — and
 * frees them when the answer is ready. `spec` is the protocol's part, made from the body.
 */
export async function predict<B, T>(
  caller: Caller,
  name: string,
  selector: Selector,
  read: () => Promise<B>,
  spec: (body: B) => PredictionSpec<T>,
): Promise<Prediction<T>> {
  const state = isolate()
  state.startBackend(caller.env)
  // The body is read once: a request served again after a backend rebuild reuses what was read.
  let body: Promise<B> | undefined
  const readOnce = () => (body ??= read())
  let freshHeap = false
  const attempt = () =>
    state.traffic.serve(caller.env, name, selector, caller, readOnce, (held, read) =>
      run(state, caller, held, spec(read), freshHeap),
    )
  try {
    return await attempt()
  } catch (error) {
    // A kernel's allocation failed inside the wasm module (an `Aborted()`): the backend is rebuilt,
    // the model loaded again, and the request served once more, as a heap with room would have.
    // Or the heap, held by this model alone, was too fragmented for one row: rebuilt the same way.
    const fragmented = error instanceof HeapFragmentedError
    if (!backendBroken() && !fragmented) throw error
    log('warn', 'request.backend_recovered', { model: name, error: (error as Error).message })
    await state.repairBackend(caller.env, fragmented ? (error as Error).message : undefined)
    freshHeap = true
    try {
      return await attempt()
    } catch (again) {
      // A fresh heap, held by this model alone, still had no room for one row beside this request's
      // inputs: not fragments, the request is too large for the isolate (as buildFeeds says of inputs).
      if (!(again instanceof HeapFragmentedError)) throw again
      const cause = (again.cause as Error | undefined)?.message
      throw new ApiError(
        413,
        `${name}: one row's run had no room on a fresh wasm heap beside this request's inputs${cause ? ` (${cause})` : ''}; send fewer rows or smaller inputs`,
      )
    }
  }
}

/**
 * Runs one prediction on a leased model. With `response_cache` in the model's config.json, the
 * answer is looked up by the hash of its inputs before the model runs, and stored after (awaited, so
 * the next identical request hits); errors are thrown before anything is stored.
 */
async function run<T>(
  state: Isolate,
  caller: Caller,
  held: ModelLease,
  spec: PredictionSpec<T>,
  freshHeap: boolean,
): Promise<Prediction<T>> {
  caller.record?.leased(held, state.cache.signatureOf(held.lease.key)?.memoryBytes)
  const feeds: Record<string, tf.Tensor> = {}
  let outputs: Record<string, tf.Tensor> = {}
  try {
    const names = spec.outputs(held)
    const ttl = held.target.config.response_cache?.ttl_seconds
    const early = ttl !== undefined ? spec.keyInputs?.(held) : undefined
    if (!early) await buildFeeds(spec, held, feeds, freshHeap)
    let key: string | undefined
    // A workers.dev route has no Cache API (it needs a custom domain): every answer there is a miss.
    const workersDev = caller.host?.endsWith('.workers.dev') === true
    if (ttl !== undefined) {
      const { target } = held
      const inputs = early ?? (await tensorInputs(feeds))
      const digest = await versionDigest(target.entry.files, preparedOf(target, held.lease.model).labels)
      key = await predictionKey({
        model: target.name,
        version: target.version,
        digest,
        config: target.config,
        format: spec.format(held),
        outputs: names,
        inputs,
      })
      if (workersDev)
        state.predictions.passOver(
          '*.workers.dev routes have no Cache API; serve from a custom domain to cache predictions',
        )
      const cached = caller.noCache || workersDev ? undefined : await state.predictions.lookup(key)
      if (cached !== undefined) {
        state.metrics.recordPredictionCache(target.name, 'hit')
        caller.record?.note({ prediction_cache: 'hit', rows: rowsOf(feeds) ?? 0 })
        return { value: cached as T, held, cache: 'hit' as const }
      }
    }
    if (early) await buildFeeds(spec, held, feeds, freshHeap)
    const started = Date.now()
    outputs = await held.lease.model.run(feeds)
    const inferMs = Date.now() - started
    caller.record?.note({
      infer_ms: inferMs,
      rows: rowsOf(feeds) ?? 1,
      ...(key !== undefined ? { prediction_cache: 'miss' } : {}),
    })
    const value = await spec.answer(held, outputs, names)
    if (key === undefined) return { value, held, inferMs }
    if (!workersDev) await state.predictions.store(key, value, ttl!)
    state.metrics.recordPredictionCache(held.target.name, 'miss')
    return { value, held, inferMs, cache: 'miss' as const }
  } finally {
    tf.dispose(feeds)
    tf.dispose(outputs)
  }
}

/**
 * Builds the feeds. Each input reserves its bytes in the budget, and room on the wasm heap, before it is
 * made (cache/memory-gate.ts): one that cannot fit beside the model is a 413 with the figures there. When
 * the heap fails an allocation anyway (its free space in pieces), evicts every idle model and builds them
 * once more. Still no block: where other requests' models hold the heap, a 503 to retry; where the heap
 * is this request's model's alone, it is fragmented, and the request is served again on a fresh heap
 * (HeapFragmentedError, as a run's); on a fresh heap, the inputs are too large beside the model: a 413
 * with the figures. Never a 500.
 */
async function buildFeeds<T>(
  spec: PredictionSpec<T>,
  held: ModelLease,
  feeds: Record<string, tf.Tensor>,
  freshHeap: boolean,
): Promise<void> {
  for (let retried = false; ; retried = true) {
    try {
      return await spec.feeds(held, feeds)
    } catch (error) {
      if (!isAllocationFailure(error)) throw error
      tf.dispose(feeds)
      for (const name of Object.keys(feeds)) delete feeds[name]
      const { cache } = isolate()
      let evicted = false
      while (cache.evictIdle(held.lease.key, 'heap')) evicted = true
      if (evicted && !retried) continue
      // As a run's: fragmented, or held by the models in use; on a fresh heap, too large beside the model.
      if (!freshHeap || cache.leases() > 1)
        throw heapShortError(held.lease.key, "this request's inputs", cache.leases(), error as Error)
      const e = findAllocation(error)!
      const figures = `a tensor of ${e.bytes} bytes, and the wasm heap (${e.heapBytes} of at most ${e.maxHeapBytes} bytes)`
      throw new ApiError(
        413,
        `${held.lease.key}: this request's inputs need ${figures} cannot hold it beside the model; send fewer rows or smaller inputs`,
      )
    }
  }
}
