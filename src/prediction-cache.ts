/**
 * @module prediction-cache — answers kept on the Workers Cache API (`caches.default`), for models
 * whose config.json has `"response_cache": {"ttl_seconds": N}`.
 *
 * The key is a SHA-256 of what decides an answer: the model, the version that answers (so a new
 * version never serves an old entry), its config.json, the response format, the outputs asked for,
 * and the parsed input tensors — dtype, shape and bytes — so whitespace, row vs columnar, JSON vs
 * binary of the same tensor all land on the same entry. An encoded image sent whole (`:classify`
 * with an image body, RPC `run(model, {image})`) is keyed by its bytes, so a hit skips decoding it
 * too. Errors are never stored.
 *
 * The Cache API is per data center, and absent on `*.workers.dev` routes (it needs a custom domain):
 * there, and wherever it fails, every lookup is a miss, logged once per isolate, and serving goes on.
 * @see https://developers.cloudflare.com/workers/runtime-apis/cache/
 */
import { concatBytes } from './http/body'
import { log } from './log'
import type { tf } from './runtime/tf'

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
      return [name, { dtype: tensor.dtype, shape: tensor.shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) }]
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
      config: parts.config,
      format: parts.format,
      outputs: parts.outputs,
      inputs: names.map((name) => [name, parts.inputs[name]!.dtype, parts.inputs[name]!.shape, parts.inputs[name]!.bytes.byteLength]),
    }),
  )
  const whole = concatBytes([header, ...names.map((name) => parts.inputs[name]!.bytes)])
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', whole))
  const hash = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('')
  return `${KEY_ORIGIN}/${encodeURIComponent(parts.model)}/${parts.version}/${hash}`
}

// ===== The stored form: JSON, with typed arrays (v2 outputs) as bytes after it =====

const TYPED = { Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Uint8Array, Uint16Array, Uint32Array, BigInt64Array, BigUint64Array }
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

/** Where the isolate's prediction cache reads and writes; holds whether the Cache API was found missing. */
export class PredictionCache {
  private missing: string | undefined
  private readonly logged = new Set<string>()

  /** Logs that the cache is not used, once per reason in this isolate. */
  passOver(reason: string): void {
    if (this.logged.has(reason)) return
    this.logged.add(reason)
    log('warn', 'prediction_cache.unavailable', { reason, effect: 'predictions are answered as misses; serving goes on' })
  }

  /** Records that the Cache API cannot be used in this isolate: from now on every lookup is a miss. */
  markUnavailable(reason: string): void {
    this.missing ??= reason
    this.passOver(reason)
  }

  private cache(): Cache | undefined {
    if (this.missing !== undefined) return undefined
    const cache = (globalThis as { caches?: CacheStorage & { default?: Cache } }).caches?.default
    if (!cache) this.markUnavailable('no Cache API (caches.default) in this runtime')
    return cache
  }

  /** The stored answer for `key`, or `undefined`. A failing Cache API is a miss. */
  async lookup(key: string): Promise<unknown> {
    const cache = this.cache()
    if (!cache) return undefined
    try {
      const hit = await cache.match(key)
      return hit ? decodeAnswer(new Uint8Array(await hit.arrayBuffer())) : undefined
    } catch (error) {
      this.markUnavailable(`caches.default.match failed: ${(error as Error).message}`)
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
    } catch (error) {
      this.markUnavailable(`caches.default.put failed: ${(error as Error).message}`)
    }
  }
}
