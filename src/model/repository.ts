/** @module model/repository — the index of models and versions, and resolving a request to one version. */
import { notFound } from '../errors'
import type { ModelFormat } from './servable'
import type { ModelStore } from './store'

/** Written by scripts/build-index.mjs at the root of the model repository. */
export const INDEX_FILE = '_index.json'

export interface VersionEntry {
  format: ModelFormat
  files: { path: string; bytes: number }[]
  weightBytes: number
  totalBytes: number
  signature: unknown
}

export interface ModelEntry {
  latest: number
  versions: Record<string, VersionEntry>
}

export interface RepositoryIndex {
  models: Record<string, ModelEntry>
}

/** One model version, resolved from a request. */
export interface ResolvedVersion {
  name: string
  version: number
  entry: VersionEntry
}

/** The repository as one index describes it. */
export class Repository {
  constructor(readonly index: RepositoryIndex) {}

  /** Model names, sorted. */
  names(): string[] {
    return Object.keys(this.index.models).sort()
  }

  /** Version numbers of a model, ascending; throws 404 for an unknown model. */
  versions(name: string): number[] {
    return Object.keys(this.model(name).versions).map(Number).sort((a, b) => a - b)
  }

  /** The version to serve: the one asked for, else the highest. Unknown model or version → 404. */
  resolve(name: string, version?: number): ResolvedVersion {
    const model = this.model(name)
    const chosen = version ?? model.latest
    const entry = model.versions[String(chosen)]
    if (!entry) {
      throw notFound(`model '${name}' has no version ${chosen}; versions: ${this.versions(name).join(', ')}`)
    }
    return { name, version: chosen, entry }
  }

  private model(name: string): ModelEntry {
    const model = Object.hasOwn(this.index.models, name) ? this.index.models[name] : undefined
    if (!model) throw notFound(`model '${name}' not found`)
    return model
  }
}

let current: Promise<Repository> | undefined

async function readIndex(store: ModelStore): Promise<Repository> {
  const bytes = await store.get(INDEX_FILE)
  if (bytes === null) {
    throw new Error(`${INDEX_FILE} is missing from ${store.description}: run 'npm run build:index' (wrangler's [build] does)`)
  }
  const index = JSON.parse(new TextDecoder().decode(bytes)) as RepositoryIndex
  if (typeof index?.models !== 'object' || index.models === null) throw new Error(`${INDEX_FILE} has no 'models'`)
  return new Repository(index)
}

/** The repository index, read once per isolate; a failed read is retried on the next call. */
export function repository(store: ModelStore): Promise<Repository> {
  current ??= readIndex(store).catch((error: unknown) => {
    current = undefined
    throw error
  })
  return current
}

/** Re-reads the index; on failure the index in use stays. */
export async function refreshRepository(store: ModelStore): Promise<Repository> {
  const next = await readIndex(store)
  current = Promise.resolve(next)
  return next
}

/** Forgets the index (tests). */
export function resetRepository(): void {
  current = undefined
}
