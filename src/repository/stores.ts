/** @module repository/stores — where model files come from: a read-only key → bytes view of a repository. */
import { DEFAULTS } from '../core/config'

/** A model repository's files, keyed by path relative to its root (`iris/1/model.json`). */
export interface ModelStore {
  /** What the store is, for messages and logs. */
  readonly description: string
  /** The file's bytes, or `null` when there is no such file. Throws when the store cannot answer. */
  get(path: string): Promise<ArrayBuffer | null>
}

// The host is never contacted: the ASSETS binding only looks at the path.
const ASSET_ORIGIN = 'https://model-assets.invalid/'

/** The URL the assets store reads `path` from; URL parsing resolves `..`, `%2e%2e` and backslashes in it. */
export const assetUrl = (path: string): URL => new URL(path, ASSET_ORIGIN)

/** Files deployed as Workers Static Assets behind the `ASSETS` binding. */
export function assetsStore(assets: Fetcher, timeoutMs: number = DEFAULTS.STORE_READ_TIMEOUT_MS): ModelStore {
  return {
    description: 'static assets',
    async get(path) {
      const response = await withTimeout(assets.fetch(assetUrl(path)), timeoutMs, `static assets (reading ${path})`)
      if (response.status === 404) {
        await response.body?.cancel()
        return null
      }
      if (!response.ok) {
        await response.body?.cancel()
        throw new Error(`static assets answered ${response.status} for ${path}`)
      }
      return withTimeout(response.arrayBuffer(), timeoutMs, `static assets (reading ${path})`)
    },
  }
}

/** Rejects with a message naming `what` when `promise` takes longer than `ms`: a slow store counts as down. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => timer !== undefined && clearTimeout(timer))
}

/** Files in an R2 bucket, in the same `<name>/<version>/…` layout as the static assets. */
export function r2Store(bucket: R2Bucket, timeoutMs: number = DEFAULTS.STORE_READ_TIMEOUT_MS): ModelStore {
  return {
    description: 'the R2 bucket',
    async get(path) {
      return withTimeout(
        (async () => {
          const object = await bucket.get(path)
          return object === null ? null : object.arrayBuffer()
        })(),
        timeoutMs,
        `R2 (reading ${path})`,
      )
    },
  }
}

/** Files already read and checked, served from memory (a candidate being validated). */
export function memoryStore(files: Map<string, ArrayBuffer>, description: string): ModelStore {
  return { description, get: async (path) => files.get(path) ?? null }
}
