/** @module model/store — where model files come from: a read-only key → bytes view of a repository. */

/** A model repository's files, keyed by path relative to its root (`iris/1/model.json`). */
export interface ModelStore {
  /** What the store is, for messages and logs. */
  readonly description: string
  /** The file's bytes, or `null` when there is no such file. Throws when the store cannot answer. */
  get(path: string): Promise<ArrayBuffer | null>
}

// The host is never contacted: the ASSETS binding only looks at the path.
const ASSET_ORIGIN = 'https://model-assets.invalid/'

/** Files deployed as Workers Static Assets behind the `ASSETS` binding. */
export function assetsStore(assets: Fetcher): ModelStore {
  return {
    description: 'static assets',
    async get(path) {
      const response = await assets.fetch(new URL(path, ASSET_ORIGIN))
      if (response.status === 404) {
        await response.body?.cancel()
        return null
      }
      if (!response.ok) {
        await response.body?.cancel()
        throw new Error(`static assets answered ${response.status} for ${path}`)
      }
      return response.arrayBuffer()
    },
  }
}
