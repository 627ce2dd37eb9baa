/**
 * @module repository/load — one model version from its store to a warm servable: read, built,
 * warmed up, checked against its config.json (image inputs, labels), wrapped for batching.
 * The cache (src/cache/model-cache.ts) calls it through the isolate state on a miss, a reload or a validation.
 */
import type { LoadResult } from '../cache/model-cache'
import { log } from '../core/log'
import { withBatching } from '../runtime/batcher'
import { buildServable } from '../runtime/servable'
import type { Learned } from '../runtime/servable'
import { tf } from '../runtime/tf'
import type { Signature } from '../runtime/signature'
import type { Backend } from '../runtime/tf'
import { verifiedStore } from './manifest'
import type { ManifestFile } from './manifest'
import { storeHandler } from './model-files'
import { cacheKey } from './repository'
import type { ResolvedVersion } from './repository'
import type { ModelStore } from './stores'

/** Where model files come from: the bundled static assets, and the R2 bucket when it is bound. */
export interface ModelSources {
  assets: ModelStore
  r2?: ModelStore
}

/**
 * The checks a protocol makes of a built model against its config.json (image inputs, labels, the
 * classify output: protocols/images/classify.ts `prepareModel`), given by the caller so the
 * repository knows no protocol. A rejection fails the load. `readFile` reads a file beside config.json.
 */
export type LoadCheck = (
  target: ResolvedVersion,
  servable: { signature: Signature },
  readFile: (file: string) => Promise<ArrayBuffer | null>,
) => Promise<{ hostBytes?: number }>

/**
 * What this isolate's builds learned by warming models up (runtime/servable.ts `Learned`), by the files they
 * read and the backend they ran on: a version evicted and loaded again (a model switch, a heap rebuild), or
 * loaded after the cron validated it here (repository/publish.ts), is not warmed up nor measured again. Its
 * files are the same: the static assets do not change under a deployment, and an R2 version is checked
 * against the sha256s its validation recorded. Kept by the isolate state (src/isolate.ts).
 */
export class EarlierLoads {
  private readonly learned = new Map<string, Learned>()

  private key(dir: string, source: string, files: readonly unknown[]): string {
    return `${dir} ${source} ${tf.getBackend()} ${JSON.stringify(files)}`
  }

  /** What an earlier build of these files on the active backend learned, if one did. */
  get(dir: string, source: string, files: readonly unknown[]): Learned | undefined {
    return this.learned.get(this.key(dir, source, files))
  }

  /** Keeps what a build learned; more versions than a deployment serves at once forget the oldest first. */
  remember(dir: string, source: string, files: readonly unknown[], learned: Learned | undefined): void {
    if (!learned) return
    if (this.learned.size >= MAX_EARLIER_LOADS) this.learned.delete(this.learned.keys().next().value!)
    this.learned.set(this.key(dir, source, files), learned)
  }
}
const MAX_EARLIER_LOADS = 256

/**
 * Reads, builds and warms up one model version on `backend`, then runs `check` on it. R2 files are checked against the size
 * and sha256 that validation recorded, so a file changed since then fails the load instead of being
 * served. With `batching` in the model's config.json, the servable merges concurrent requests
 * (runtime/batcher.ts).
 */
export async function loadVersion(
  sources: ModelSources,
  target: ResolvedVersion,
  backend: Backend,
  now: () => number,
  check: LoadCheck,
  earlierLoads?: EarlierLoads,
): Promise<LoadResult> {
  const dir = cacheKey(target.name, target.version)
  let store = sources.assets
  if (target.entry.source === 'r2') {
    if (!sources.r2) throw new Error(`${dir} is in the R2 bucket, but no bucket is bound (MODELS)`)
    store = verifiedStore(
      sources.r2,
      dir,
      target.entry.files.filter((f): f is ManifestFile => 'sha256' in f),
    )
  }
  // The backend starts (or is found started) while the files are read: neither waits for the other.
  const ready = backend.ensure()
  ready.catch(() => {})
  const fetchStarted = now()
  let fetchMs = 0
  // The index's measurement counts only for the very files it was made of.
  const memory = target.entry.memory
  const digest = memory ? ({} as { value?: string }) : undefined
  // The artifacts are not kept here: their shards are released once the backend holds the weights.
  const listed = target.entry.files.map((f) => f.path)
  const artifacts = await storeHandler(store, dir, digest, listed)
    .load()
    .finally(() => (fetchMs = now() - fetchStarted))
  await ready
  const known = memory && digest?.value === memory.digest ? memory : undefined
  if (memory && !known)
    log('warn', 'model.memory_stale', {
      model: dir,
      reason: 'the index measured other files (digest differs); measuring here',
    })
  const { source = 'assets', files } = target.entry
  const { servable, timings, warmedUp, learned } = await buildServable(
    artifacts,
    known,
    earlierLoads?.get(dir, source, files),
  )
  earlierLoads?.remember(dir, source, files, learned)
  // Image inputs, labels and the classify output are checked against the built model.
  const labelsStore = target.entry.source === 'r2' ? sources.r2! : sources.assets
  const checked = await check(target, servable, (file) => labelsStore.get(`${target.name}/${file}`)).catch(
    (error: unknown) => {
      servable.dispose()
      throw error
    },
  )
  // What the model keeps in JavaScript beside its tensors (a text input's tokenizer) counts with it.
  servable.footprint.hostBytes = checked.hostBytes ?? 0
  if (!warmedUp) {
    log('warn', 'model.warmup_skipped', {
      model: dir,
      reason: 'an input has unknown dimensions; its activations are measured on its first request',
    })
  }
  // Wrapped after warmup, so warmup runs the model alone and fills in output shapes the batcher checks.
  const batching = target.config.batching
  const served = batching
    ? withBatching(servable, {
        maxBatchSize: batching.max_batch_size,
        maxQueueDelayMs: batching.max_queue_delay_ms,
        model: dir,
      })
    : servable
  return { servable: served, timings: { fetchMs, ...timings } }
}
