/** @module model/repository — the index of models and versions, and resolving a request to one version. */
import { z } from 'zod'
import { ModelUnavailableError, notFound } from '../errors'
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

/**
 * A model's optional `config.json`, beside its version folders. Every field is optional.
 * Unknown fields are refused, so a typo cannot silently switch a limit off.
 */
export const ModelConfig = z.strictObject({
  /** A human description, shown in the model's metadata. */
  description: z.string().optional(),
  /** Rows per request for this model; the Worker's MAX_BATCH_SIZE still applies if lower. */
  max_batch_size: z.int().positive().optional(),
  /** Outputs returned when a request names none. */
  default_outputs: z.array(z.string()).min(1).optional(),
  /** Allowed value range per input name. */
  input_limits: z.record(z.string(), z.strictObject({ min: z.number().optional(), max: z.number().optional() })).optional(),
})
export type ModelConfig = z.infer<typeof ModelConfig>

export interface ModelEntry {
  latest: number
  versions: Record<string, VersionEntry>
  config?: unknown
}

export interface RepositoryIndex {
  models: Record<string, ModelEntry>
}

/** One model version, resolved from a request. */
export interface ResolvedVersion {
  name: string
  version: number
  entry: VersionEntry
  config: ModelConfig
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
    return { name, version: chosen, entry, config: this.config(name) }
  }

  /** The model's config.json, checked; a broken one makes the model unavailable, with the reason. */
  config(name: string): ModelConfig {
    const result = ModelConfig.safeParse(this.model(name).config ?? {})
    if (!result.success) throw new ModelUnavailableError(`${name}/config.json is invalid: ${z.prettifyError(result.error)}`, 60)
    return result.data
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
