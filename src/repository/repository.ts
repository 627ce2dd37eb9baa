/** @module repository/repository — the index of models and versions, and resolving a request to one version. */
import { ModelUnavailableError, notFound } from '../core/errors'
import type { ManifestFile } from './manifest'
import type { Pointer, Rejection } from './pointer'
import type { MemoryFigures } from '../runtime/footprint'
import type { ModelFormat } from '../runtime/servable'
import type { ModelStore } from './stores'

/** Written by scripts/build/build-index.mjs at the root of the model repository. */
export const INDEX_FILE = '_index.json'

/** Where a version's files are: the bundled static assets, or the R2 bucket. */
export type VersionSource = 'assets' | 'r2'

export interface VersionEntry {
  format: ModelFormat
  /** Bundled versions have sizes only; R2 versions also their sha256, checked on every load. */
  files: ({ path: string; bytes: number } | ManifestFile)[]
  weightBytes: number
  totalBytes: number
  signature: unknown
  /** Absent in _index.json, which lists only bundled versions. */
  source?: VersionSource
  /** What the wasm heap needs for this version, measured by the zoo's script (docs/memory.md); counted when its digest matches the files. */
  memory?: MemoryFigures
}

// The schema lives in its own file, free of relative imports, so scripts/build/build-index.mjs checks
// bundled config.json files with the very code the Worker uses.
import { checkModelConfig } from './model-config'
import type { ModelConfig } from './model-config'
export { MAX_QUEUE_DELAY_MS, ModelConfig, checkModelConfig } from './model-config'

export interface ModelEntry {
  latest: number
  versions: Record<string, VersionEntry>
  config?: unknown
  /** R2 candidates the cron handler refused, by version. */
  rejected?: Record<string, Rejection>
  /** R2 candidates the cron handler could not validate yet, by version (`deferred: true` on each). */
  deferred?: Record<string, Rejection>
}

export interface RepositoryIndex {
  models: Record<string, ModelEntry>
}

/** One model version, resolved from a request. */
/** A model version's key in the model cache, and its folder in a store: `name/version`. */
export const cacheKey = (name: string, version: number) => `${name}/${version}`

export interface ResolvedVersion {
  name: string
  version: number
  entry: VersionEntry
  config: ModelConfig
}

/** What a request names besides the model: a version, a label, or neither (the default version). */
export interface Selector {
  version?: number
  label?: string
}

/** The repository as one index describes it. */
export class Repository {
  /** Each model's config.json as checked: the index never changes, so it is checked once, not per request. */
  readonly #configs = new Map<string, ReturnType<typeof checkModelConfig>>()

  constructor(readonly index: RepositoryIndex) {}

  /** Model names, sorted. */
  names(): string[] {
    return Object.keys(this.index.models).sort()
  }

  /** Version numbers of a model, ascending; throws 404 for an unknown model. */
  versions(name: string): number[] {
    return Object.keys(this.model(name).versions)
      .map(Number)
      .sort((a, b) => a - b)
  }

  /**
   * The version to serve: the one asked for, the one a label names, else the default under the
   * model's version policy. Unknown model, version or label, or a version the policy excludes → 404.
   */
  resolve(name: string, selector: Selector | number = {}): ResolvedVersion {
    const { version, label } = typeof selector === 'number' ? { version: selector, label: undefined } : selector
    const model = this.model(name)
    const config = this.config(name)
    const served = this.served(name, config)
    let chosen = version ?? served.at(-1)!
    if (label !== undefined) {
      const labels = config.version_labels ?? {}
      const labelled = Object.hasOwn(labels, label) ? labels[label] : undefined
      if (labelled === undefined) {
        const known = Object.keys(labels)
        throw notFound(
          `model '${name}' has no label '${label}'; ${known.length ? `labels: ${known.join(', ')}` : 'it has no labels'}`,
        )
      }
      chosen = labelled
    }
    const entry = served.includes(chosen) ? model.versions[String(chosen)] : undefined
    if (!entry) {
      const via = label === undefined ? '' : `label '${label}' names version ${chosen}, but `
      const rejected = model.rejected?.[String(chosen)] ?? model.deferred?.[String(chosen)]
      if (rejected?.deferred)
        throw notFound(`${via}version ${chosen} of model '${name}' is not validated yet: ${rejected.reason}`)
      if (rejected) throw notFound(`${via}version ${chosen} of model '${name}' was rejected: ${rejected.reason}`)
      throw notFound(`${via}model '${name}' has no version ${chosen}; versions: ${served.join(', ')}`)
    }
    return { name, version: chosen, entry, config }
  }

  /** Versions the model's version policy serves, ascending; never empty (a policy that leaves none is a 503). */
  served(name: string, config = this.config(name)): number[] {
    const all = this.versions(name)
    const policy = config.version_policy
    if (!policy || 'latest' in policy) return all
    const served = all.filter((v) => policy.specific.versions.includes(v))
    if (served.length === 0) {
      throw new ModelUnavailableError(
        `${name}: version_policy serves versions ${policy.specific.versions.join(', ')}, none of which exists (versions: ${all.join(', ')})`,
        60,
      )
    }
    return served
  }

  /** R2 candidates of a model that the cron handler refused or deferred (`deferred`), by version. */
  rejected(name: string): Record<string, Rejection> {
    const model = this.model(name)
    const deferred = Object.entries(model.deferred ?? {}).map(([v, r]) => [v, { ...r, deferred: true }] as const)
    return { ...model.rejected, ...Object.fromEntries(deferred) }
  }

  /** The model's config.json, checked; a broken one makes the model unavailable, with the reason. */
  config(name: string): ModelConfig {
    let checked = this.#configs.get(name)
    if (!checked) this.#configs.set(name, (checked = checkModelConfig(this.model(name).config ?? {})))
    if (!checked.ok) throw new ModelUnavailableError(`${name}/config.json is invalid: ${checked.message}`, 60)
    return checked.config
  }

  private model(name: string): ModelEntry {
    const model = Object.hasOwn(this.index.models, name) ? this.index.models[name] : undefined
    if (!model) throw notFound(`model '${name}' not found`)
    return model
  }
}

/**
 * The bundled index with the R2 pointer laid over it: each validated R2 version joins the model's
 * versions (a model may live in R2 alone), the bucket's config.json replaces a bundled one, and
 * rejected candidates ride along for the status. `allowed` is the R2_MODELS var.
 */
export function overlay(index: RepositoryIndex, pointer: Pointer, allowed: '*' | Set<string>): RepositoryIndex {
  const models = { ...index.models }
  for (const [name, published] of Object.entries(pointer.models)) {
    if (allowed !== '*' && !allowed.has(name)) continue
    const base = Object.hasOwn(models, name) ? models[name] : undefined
    const versions: Record<string, VersionEntry> = { ...base?.versions }
    for (const [version, entry] of Object.entries(published.versions)) {
      versions[version] = {
        format: entry.format,
        files: entry.files,
        weightBytes: entry.weightBytes,
        totalBytes: entry.totalBytes,
        signature: entry.signature,
        source: 'r2',
      }
    }
    const numbers = Object.keys(versions).map(Number)
    if (numbers.length === 0) continue
    models[name] = {
      latest: Math.max(...numbers),
      versions,
      config: published.config ?? base?.config,
      rejected: published.rejected,
      ...(published.deferred && { deferred: published.deferred }),
    }
  }
  return { models }
}

async function readIndex(store: ModelStore): Promise<Repository> {
  const bytes = await store.get(INDEX_FILE)
  if (bytes === null) {
    throw new Error(
      `${INDEX_FILE} is missing from ${store.description}: run 'npm run build:index' (wrangler's [build] does)`,
    )
  }
  const index = JSON.parse(new TextDecoder().decode(bytes)) as RepositoryIndex
  if (typeof index?.models !== 'object' || index.models === null) throw new Error(`${INDEX_FILE} has no 'models'`)
  return new Repository(index)
}

/** The bundled repository's index (`_index.json` in the static assets), read once per isolate. */
export class BundledIndex {
  private current: Promise<Repository> | undefined

  /** The index, read on first use; a failed read is retried on the next call. */
  read(store: ModelStore): Promise<Repository> {
    this.current ??= readIndex(store).catch((error: unknown) => {
      this.current = undefined
      throw error
    })
    return this.current
  }

  /** Reads the index again (the cron); on failure the index in use stays. */
  async reread(store: ModelStore): Promise<Repository> {
    const next = await readIndex(store)
    this.current = Promise.resolve(next)
    return next
  }
}
