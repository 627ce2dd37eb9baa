/**
 * @module cache/prediction-cache — answers kept on the Workers Cache API (`caches.default`), for models
 * whose config.json has `"response_cache": {"ttl_seconds": N}`.
 *
 * The key is a SHA-256 of what decides an answer: the model, the version that answers (so a new
 * version never serves an old entry) and a digest of its files and labels (so files uploaded again
 * under an old number, or a changed labels file, never meet an old entry), its config.json, the
 * response format, the outputs asked for,
 * and the parsed input tensors — dtype, shape and bytes — so whitespace, row vs columnar, JSON vs
 * binary of the same tensor all land on the same entry. An encoded image sent whole (`:classify`
 * with an image body, RPC `run(model, {image})`) is keyed by its bytes, so a hit skips decoding it
 * too. Errors are never stored.
 *
 * The Cache API is per data center, and absent on `*.workers.dev` routes (it needs a custom domain):
 * there every lookup is a miss, logged once per isolate, and serving goes on. Where a call to it
 * fails, the cache is left alone for a while (PREDICTION_CACHE_BACKOFF_BASE_MS, doubling per failure
 * in a row up to PREDICTION_CACHE_BACKOFF_MAX_MS), then tried again; one success clears the count.
 * @see https://developers.cloudflare.com/workers/runtime-apis/cache/
 */
import { concatBytes } from '../http/body'
import { log } from '../core/log'
import type { tf } from '../runtime/tf'

export type PredictionCacheOutcome = 'hit' | 'miss'

/** One input as the key sees it: a parsed tensor's dtype, shape and bytes, or an encoded image's bytes. */
export interface KeyInput {
  dtype: string
  shape: number[]
  bytes: Uint8Array
}

/** What one prediction's answer depends on. */
export interface PredictionKeyParts {
  model: string
  version: number
  /** `versionDigest` of the version's files and the labels its answers use. */
  digest: string
  /** The model's config.json as it applies to this version (labels, top_k, activation shape answers). */
  config: unknown
  /** The shape of the answer: `tf-serving-rows`, `v2`, `classify;top_k=5`… */
  format: string
  outputs: string[]
  inputs: Record<string, KeyInput>
}

/** The key's view of parsed input tensors. */
export async function tensorInputs(feeds: Record<string, tf.Tensor>): Promise<Record<string, KeyInput>> {
  const entries = await Promise.all(
    Object.entries(feeds).map(async ([name, tensor]): Promise<[string, KeyInput]> => {
      const data = await tensor.data()
      return [
        name,
        {
          dtype: tensor.dtype,
          shape: tensor.shape,
          bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
        },
      ]
    }),
  )
  return Object.fromEntries(entries)
}

// The key's host: a fixed name, so HTTP and RPC callers of any route share entries. The Cache API keys
// entries by the full URL within the zone; the host needs no DNS.
const KEY_ORIGIN = 'https://prediction-cache.warmserve.internal'

/** The cache key: a URL ending in the hex SHA-256 of the parts, the inputs' bytes in input-name order. */
export async function predictionKey(parts: PredictionKeyParts): Promise<string> {
  const names = Object.keys(parts.inputs).sort()
  const header = new TextEncoder().encode(
    JSON.stringify({
      model: parts.model,
      version: parts.version,
      digest: parts.digest,
      config: parts.config,
      format: parts.format,
      outputs: parts.outputs,
      inputs: names.map((name) => [
        name,
        parts.inputs[name]!.dtype,
        parts.inputs[name]!.shape,
        parts.inputs[name]!.bytes.byteLength,
      ]),
    }),
  )
  const whole = concatBytes([header, ...names.map((name) => parts.inputs[name]!.bytes)])
  const hash = hex(await crypto.subtle.digest('SHA-256', whole))
  return `${KEY_ORIGIN}/${encodeURIComponent(parts.model)}/${parts.version}/${hash}`
}

const hex = (digest: ArrayBuffer) => Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('')

// Memos: a version's files and a loaded model's labels are fixed objects for as long as they are used.
const fileDigests = new WeakMap<object, Promise<string>>()
const labelDigests = new WeakMap<object, Promise<string>>()

const digestOf = (memo: WeakMap<object, Promise<string>>, of: object) => {
  let digest = memo.get(of)
  if (!digest)
    memo.set(of, (digest = crypto.subtle.digest('SHA-256', new TextEncoder().encode(JSON.stringify(of))).then(hex)))
  return digest
}

/**
 * What identifies a version's content: the SHA-256 of its file list (each file's path, size and, for
 * an R2 version, sha256) and of the labels its answers use (inline in config.json or from a labels
 * file, as the loaded model has them). Memoized per object.
 */
export async function versionDigest(files: object, labels: readonly string[] | undefined): Promise<string> {
  const [ofFiles, ofLabels] = await Promise.all([
    digestOf(fileDigests, files),
    labels ? digestOf(labelDigests, labels) : '',
  ])
  return `${ofFiles}:${ofLabels}`
}

// ===== The stored form: JSON, with typed arrays (v2 outputs) as bytes after it =====

const TYPED = {
  Float32Array,
  Float64Array,
  Int8Array,
  Int16Array,
  Int32Array,
  Uint8Array,
  Uint16Array,
  Uint32Array,
  BigInt64Array,
  BigUint64Array,
}
type TypedName = keyof typeof TYPED

/** An answer as a cacheable body: a 4-byte JSON length, the JSON, then each typed array's bytes. */
export function encodeAnswer(value: unknown): Uint8Array {
  const parts: Uint8Array[] = []
  let offset = 0
  const json = JSON.stringify(value, (_key, v: unknown) => {
    if (!ArrayBuffer.isView(v) || v instanceof DataView) return v
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
    parts.push(bytes)
    offset += bytes.byteLength
    return { $typed: v.constructor.name, $offset: offset - bytes.byteLength, $bytes: bytes.byteLength }
  })
  const text = new TextEncoder().encode(json)
  const length = new Uint8Array(4)
  new DataView(length.buffer).setUint32(0, text.byteLength, true)
  return concatBytes([length, text, ...parts])
}

/** The answer `encodeAnswer` stored, typed arrays and all. */
export function decodeAnswer(body: Uint8Array): unknown {
  const length = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(0, true)
  const binary = body.subarray(4 + length)
  return JSON.parse(new TextDecoder().decode(body.subarray(4, 4 + length)), (_key, v: unknown) => {
    if (typeof v !== 'object' || v === null || !('$typed' in v)) return v
    const { $typed, $offset, $bytes } = v as { $typed: TypedName; $offset: number; $bytes: number }
    // A copy, so the array is aligned to its element size.
    const copy = binary.slice($offset, $offset + $bytes)
    return new TYPED[$typed](copy.buffer)
  })
}

/** First pause after a Cache API call fails; it doubles per failure in a row … */
export const PREDICTION_CACHE_BACKOFF_BASE_MS = 1_000
/** … up to this: a cache that keeps failing is tried again once a few minutes, never given up for good. */
export const PREDICTION_CACHE_BACKOFF_MAX_MS = 5 * 60_000

/** Where the isolate's prediction cache reads and writes; holds whether the Cache API is missing, and its back-off after failures. */
export class PredictionCache {
  private missing: string | undefined
  private readonly logged = new Set<string>()
  /** Failed Cache API calls in a row; every lookup and store is a miss until `retryAt`. */
  private failures = 0
  private retryAt = 0
  /** Failed calls by operation (`match`, `put`), and calls skipped while backing off: `/metrics`. */
  readonly errors = { match: 0, put: 0 }
  skipped = 0

  constructor(private readonly now: () => number = Date.now) {}

  /** Milliseconds until the Cache API is tried again (0 when it is in use). */
  backoffMs(): number {
    return Math.max(0, this.retryAt - this.now())
  }

  /** Logs that the cache is not used, once per reason in this isolate. */
  passOver(reason: string): void {
    if (this.logged.has(reason)) return
    this.logged.add(reason)
    log('warn', 'prediction_cache.unavailable', {
      reason,
      effect: 'predictions are answered as misses; serving goes on',
    })
  }

  /** Records that the Cache API cannot be used in this isolate: from now on every lookup is a miss. */
  markUnavailable(reason: string): void {
    this.missing ??= reason
    this.passOver(reason)
  }

  private cache(): Cache | undefined {
    if (this.missing !== undefined) return undefined
    if (this.now() < this.retryAt) {
      this.skipped++
      return undefined
    }
    const cache = (globalThis as { caches?: CacheStorage & { default?: Cache } }).caches?.default
    if (!cache) this.markUnavailable('no Cache API (caches.default) in this runtime')
    return cache
  }

  /** A Cache API call failed: misses for a bounded, doubling while, then the cache is tried again. */
  private failed(operation: 'match' | 'put', error: unknown): void {
    this.errors[operation]++
    this.failures++
    const waitMs = Math.min(
      PREDICTION_CACHE_BACKOFF_MAX_MS,
      PREDICTION_CACHE_BACKOFF_BASE_MS * 2 ** (this.failures - 1),
    )
    this.retryAt = this.now() + waitMs
    log('warn', 'prediction_cache.backoff', {
      operation,
      error: (error as Error)?.message ?? String(error),
      failures: this.failures,
      retryInMs: waitMs,
      effect: 'predictions are answered as misses until then; serving goes on',
    })
  }

  private succeeded(): void {
    if (this.failures === 0) return
    log('info', 'prediction_cache.recovered', { afterFailures: this.failures })
    this.failures = 0
  }

  /** The stored answer for `key`, or `undefined`. A failing Cache API is a miss. */
  async lookup(key: string): Promise<unknown> {
    const cache = this.cache()
    if (!cache) return undefined
    try {
      const hit = await cache.match(key)
      const value = hit ? decodeAnswer(new Uint8Array(await hit.arrayBuffer())) : undefined
      this.succeeded()
      return value
    } catch (error) {
      this.failed('match', error)
      return undefined
    }
  }

  /** Stores an answer for `ttlSeconds`. Never throws: a failing Cache API only costs the next hit. */
  async store(key: string, value: unknown, ttlSeconds: number): Promise<void> {
    const cache = this.cache()
    if (!cache) return
    try {
      const headers = { 'Content-Type': 'application/octet-stream', 'Cache-Control': `max-age=${ttlSeconds}` }
      await cache.put(key, new Response(encodeAnswer(value), { headers }))
      this.succeeded()
    } catch (error) {
      this.failed('put', error)
    }
  }
}
