/**
 * @module repository/publish — the cron side of refresh: find versions uploaded to the R2 bucket,
 * validate each, and publish the outcome as the pointer that serving isolates follow.
 *
 * A version is a candidate once its `manifest.json` exists (publish-model writes it last). It is
 * accepted only if every file the manifest lists is present with the recorded size and sha256, the
 * memory its model.json implies (weights and warmup activations, runtime/memory-estimate.ts) fits
 * CACHE_BUDGET_BYTES, it builds, its warmup inference runs, and its signature matches the current
 * version's unless the manifest declares the change. A rejected candidate is never published; its
 * reason is, so the model's status shows it. A validation that fails because of R2 or the wasm
 * backend is no verdict on the candidate: nothing is stored, and the next run tries again. Nothing validated here is served from here: the build is thrown away,
 * and serving isolates load the version through their own caches.
 */
import { z } from 'zod'
import { log } from '../core/log'
import type { LoadResult, ModelCache } from '../cache/model-cache'
import type { EarlierLoads } from './load'
import { storeHandler } from './model-files'
import { fileProblem, MANIFEST_FILE, VersionManifest } from './manifest'
import { readPointer, writePointer } from './pointer'
import type { Pointer, PointerModel, PublishedVersion, Rejection } from './pointer'
import { checkModelConfig, overlay, Repository } from './repository'
import type { ResolvedVersion } from './repository'
import { HEAP_PER_ACTIVATION_BYTE, KERNEL_FACTOR } from '../runtime/footprint'
import { estimateMemory, formatBytes } from '../runtime/memory-estimate'
import { buildServable } from '../runtime/servable'
import { tf } from '../runtime/tf'
import { findAllocation, guardedBackend, isBackendFailure } from '../runtime/wasm-guard'
import { signatureChanges } from '../runtime/signature'
import type { Signature } from '../runtime/signature'
import { memoryStore, r2Store, withTimeout } from './stores'

/** Candidates validated per cron run: each is fetched, hashed, built and warmed within one invocation's CPU and memory. */
export const MAX_CANDIDATES_PER_RUN = 4
/** Pages of an R2 listing read per prefix (1000 keys each): a bound, not an expected size. */
const MAX_LIST_PAGES = 10
/** Longest wait for one R2 call of the cron handler; a slow bucket fails this run, and the next run retries. */
const R2_CALL_TIMEOUT_MS = 10_000
/** Files fetched at once: Workers allow six simultaneous outgoing connections. */
const MAX_PARALLEL_FILES = 6

// As scripts/build/build-index.mjs names them.
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
const VERSION = /^[1-9][0-9]{0,15}$/

export interface PublishDeps {
  bucket: R2Bucket
  /** The bundled repository. */
  base: Repository
  /** The R2_MODELS var. */
  allowed: '*' | Set<string>
  /**
   * The cron isolate's cache: to read the current version's signature, and its budget
   * (CACHE_BUDGET_BYTES), past which a candidate's weights and warmup activations are rejected unbuilt.
   */
  cache: ModelCache
  load: (target: ResolvedVersion) => Promise<LoadResult>
  /** A version's signature without loading it, when it is loaded or its index entry holds it (Isolate.knownSignature). */
  knownSignature: (target: ResolvedVersion) => { signature: Signature } | undefined
  /** Where an accepted candidate's warmup is kept, so that this isolate's load of it does not warm it up again. */
  earlierLoads?: EarlierLoads
}

/** What one run did. */
export interface PublishReport {
  accepted: string[]
  rejected: { model: string; reason: string }[]
  removed: string[]
  /** Whether the pointer was written (only when something changed). */
  published: boolean
  errors: string[]
}

const r2 = <T>(promise: Promise<T>, what: string) => withTimeout(promise, R2_CALL_TIMEOUT_MS, `R2 (${what})`)

/** A validation that failed because of where it ran (R2, the wasm backend), not because of the candidate: not its verdict. */
class EnvironmentError extends Error {}

const environmental = <T>(promise: Promise<T>) =>
  promise.catch((error: Error) => {
    throw new EnvironmentError(error.message, { cause: error })
  })

const MiB = 1024 * 1024
const formatBudget = (bytes: number) => (bytes % MiB === 0 ? `${bytes / MiB} MiB` : formatBytes(bytes))

/**
 * Rejects, before anything is built, a model whose estimated memory exceeds the budget, counted as
 * the cache counts a loaded model with one row running (runtime/footprint.ts): its float32 weights,
 * the kernels' state beside them, and the heap its warmup activations take.
 */
function checkMemory(modelJson: ArrayBuffer, budgetBytes: number): number {
  let json: tf.io.ModelJSON
  try {
    json = JSON.parse(new TextDecoder().decode(modelJson)) as tf.io.ModelJSON
    if (json.modelTopology == null || !Array.isArray(json.weightsManifest)) return 0 // the load says what is wrong with it
  } catch {
    return 0
  }
  const { weightBytes, activationBytes, complete } = estimateMemory({
    ...json,
    weightSpecs: tf.io.getWeightSpecs(json.weightsManifest),
  })
  const kernelBytes = weightBytes * KERNEL_FACTOR
  const heapBytes = Math.ceil(activationBytes * HEAP_PER_ACTIVATION_BYTE)
  const needs = weightBytes + kernelBytes + heapBytes
  if (needs <= budgetBytes) return needs
  throw new Error(
    `needs ${complete ? '~' : 'at least '}${formatBytes(needs)} at warmup (weights ${formatBytes(weightBytes)} + kernels ${formatBytes(kernelBytes)} + activations ${formatBytes(heapBytes)}), the budget is ${formatBudget(budgetBytes)}`,
  )
}

/** Sub-folders and files directly under `prefix`. */
async function listDir(bucket: R2Bucket, prefix: string): Promise<{ dirs: string[]; files: string[] }> {
  const dirs: string[] = []
  const files: string[] = []
  let cursor: string | undefined
  for (let page = 0; page < MAX_LIST_PAGES; page++) {
    const listing = await r2(
      bucket.list({ prefix, delimiter: '/', ...(cursor ? { cursor } : {}) }),
      `listing ${prefix || '/'}`,
    )
    dirs.push(...listing.delimitedPrefixes.map((p) => p.slice(prefix.length, -1)))
    files.push(...listing.objects.map((o) => o.key.slice(prefix.length)))
    if (!listing.truncated) break
    cursor = listing.cursor
  }
  return { dirs, files }
}

/** Validates one candidate; throws an Error whose message is the reason it is rejected. */
async function validate(
  bucket: R2Bucket,
  name: string,
  version: number,
  cache: ModelCache,
  current?: { version: number; signature: Signature },
  earlierLoads?: EarlierLoads,
): Promise<PublishedVersion> {
  const budgetBytes = cache.options.budgetBytes
  const dir = `${name}/${version}`
  const object = await environmental(r2(bucket.get(`${dir}/${MANIFEST_FILE}`), `reading ${dir}/${MANIFEST_FILE}`))
  if (object === null) throw new Error(`${dir}/${MANIFEST_FILE} disappeared during validation`)
  let raw: unknown
  try {
    raw = JSON.parse(await object.text())
  } catch (error) {
    throw new Error(`${dir}/${MANIFEST_FILE} is not valid JSON: ${(error as Error).message}`)
  }
  const parsed = VersionManifest.safeParse(raw)
  if (!parsed.success) throw new Error(`${dir}/${MANIFEST_FILE} is invalid: ${z.prettifyError(parsed.error)}`)
  const manifest = parsed.data
  if (!manifest.files.some((f) => f.path === 'model.json'))
    throw new Error(`${dir}/${MANIFEST_FILE} lists no model.json`)

  // Every file present, with the recorded size and hash, before anything is built from them.
  const files = new Map<string, ArrayBuffer>()
  const store = r2Store(bucket, R2_CALL_TIMEOUT_MS)
  const fetchChecked = async (file: (typeof manifest.files)[number]) => {
    const bytes = await environmental(store.get(`${dir}/${file.path}`))
    const problem = await fileProblem(dir, file, bytes)
    if (problem) throw new Error(problem)
    files.set(`${dir}/${file.path}`, bytes!)
  }
  // model.json first: what the model would cost is known from it, before its weights are fetched.
  const [modelFile, ...weightFiles] = [...manifest.files].sort(
    (a, b) => Number(b.path === 'model.json') - Number(a.path === 'model.json'),
  )
  await fetchChecked(modelFile!)
  const needs = checkMemory(files.get(`${dir}/model.json`)!, budgetBytes)
  for (let i = 0; i < weightFiles.length; i += MAX_PARALLEL_FILES) {
    await Promise.all(weightFiles.slice(i, i + MAX_PARALLEL_FILES).map(fetchChecked))
  }
  const artifacts = await storeHandler(memoryStore(files, 'the candidate'), dir).load()
  const { servable, warmedUp, learned } = await buildWithRoom(cache, dir, needs, () => buildServable(artifacts))
  try {
    if (!warmedUp) log('warn', 'publish.warmup_skipped', { model: dir, reason: 'an input has unknown dimensions' })
    if (current && !manifest.signature_change) {
      const changes = signatureChanges(current.signature, servable.signature)
      if (changes.length > 0) {
        throw new Error(
          `its signature differs from version ${current.version}: ${changes.join('; ')}; publish it with --signature-change if that is intended`,
        )
      }
    }
    earlierLoads?.remember(dir, 'r2', manifest.files, learned)
    return {
      format: servable.format,
      files: manifest.files,
      weightBytes: servable.weightBytes,
      totalBytes: manifest.files.reduce((n, f) => n + f.bytes, 0),
      signature: servable.signature,
      manifestEtag: object.etag,
      validatedAt: new Date().toISOString(),
    }
  } finally {
    servable.dispose()
  }
}

/**
 * Builds a candidate beside the models this isolate holds when it fits, and otherwise instead of the
 * idle ones (the serving version's copy among them: it reloads on its next request), so validation
 * never needs two copies where the heap has room for one. Idle models are evicted, least recently
 * used first, while the cache's count plus the candidate's estimate exceeds the budget, and again
 * each time the build cannot get wasm heap (ModelCache.withHeapRoom, as a load on the serving path).
 *
 * With every model gone and the build still short of heap although the heap has room for the
 * candidate in pieces, the heap is fragmented: it is rebuilt, and the build tried once more, rather
 * than deferred until the isolate dies; so is a backend the build broke. A candidate that cannot be
 * built alone on a fresh heap is refused.
 */
function buildWithRoom<T>(cache: ModelCache, dir: string, needs: number, build: () => Promise<T>): Promise<T> {
  const what = `validating the candidate ${dir}`
  while (cache.residentBytes() + needs > cache.options.budgetBytes && cache.evictIdle('', what));
  return cache.withHeapRoom(
    { what },
    build,
    (why) => new Error(`it cannot be built ${why}`),
    (error) => heapHolds(Math.max(needs, findAllocation(error)?.bytes ?? 0)),
  )
}

/** Whether the wasm heap's free space, pieces included, and what it may still grow come to `bytes`. */
function heapHolds(bytes: number): boolean {
  const backend = guardedBackend()
  return backend !== undefined && backend.heap().maxBytes - backend.usedBytes() >= bytes
}

/**
 * The signature of the version a request without a version gets now, or `undefined` if there is none or it cannot load.
 * Loaded only when nothing else tells it exactly: an R2 version's is in the pointer (its validation build), a loaded
 * model's in the cache, and a bundled layers model's in the index (tf.js built its topology there, as a load does, so
 * the cron does not load, and evict for, a MobileNet to compare a candidate with it). A bundled graph model's declared
 * signature can differ from the built one (int64 is int32 in tf.js; warmup fills unknown output shapes): it is loaded.
 */
async function currentSignature(
  repo: Repository,
  name: string,
  deps: PublishDeps,
): Promise<{ version: number; signature: Signature } | undefined> {
  if (!repo.names().includes(name)) return undefined
  const target = repo.resolve(name)
  if (target.entry.source === 'r2') return { version: target.version, signature: target.entry.signature as Signature }
  const loaded = deps.cache.signatureOf(`${name}/${target.version}`)
  if (loaded) return { version: target.version, signature: loaded.signature }
  const indexed = target.entry.format === 'layers-model' ? deps.knownSignature(target) : undefined
  if (indexed) return { version: target.version, signature: indexed.signature }
  try {
    const lease = await deps.cache.acquire(`${name}/${target.version}`, target.entry.weightBytes, () =>
      deps.load(target),
    )
    try {
      return { version: target.version, signature: lease.model.signature }
    } finally {
      lease.release()
    }
  } catch (error) {
    log('warn', 'publish.current_unloadable', { model: `${name}/${target.version}`, error: (error as Error).message })
    return undefined
  }
}

/** One model's part of the pointer, brought up to date with its folder in the bucket. */
async function nextPointerModel(
  name: string,
  previous: PointerModel | undefined,
  pointer: Pointer,
  deps: PublishDeps,
  report: PublishReport,
  budget: { left: number },
) {
  const model: PointerModel = {
    current: previous?.current ?? null,
    versions: { ...previous?.versions },
    rejected: { ...previous?.rejected },
    ...(previous?.config !== undefined ? { config: previous.config } : {}),
  }
  const { dirs, files } = await listDir(deps.bucket, `${name}/`)
  if (files.includes('config.json')) {
    const object = await r2(deps.bucket.get(`${name}/config.json`), `reading ${name}/config.json`)
    const checked = object && checkModelConfig(await object.json().catch(() => undefined))
    if (checked?.ok) model.config = checked.config
    else
      report.errors.push(
        `${name}/config.json is invalid, kept the previous one${checked ? `: ${checked.message}` : ''}`,
      )
  } else {
    delete model.config
  }
  const versions = dirs
    .filter((d) => VERSION.test(d))
    .map(Number)
    .sort((a, b) => a - b)
  const etags = new Map<number, string>()
  for (const version of versions) {
    const head = await r2(deps.bucket.head(`${name}/${version}/${MANIFEST_FILE}`), `checking ${name}/${version}`)
    if (head) etags.set(version, head.etag) // no manifest yet: an upload in progress, not a candidate
  }
  // A published version whose manifest is gone was deleted: withdraw it. One whose manifest changed
  // was uploaded over: withdrawn too (its files are not the ones validated), and its number refused
  // for good, since isolates keep the old weights loaded and the prediction cache keeps their answers.
  for (const key of Object.keys(model.versions)) {
    const etag = etags.get(Number(key))
    if (etag === model.versions[key]!.manifestEtag) continue
    delete model.versions[key]
    report.removed.push(`${name}/${key}`)
    if (etag !== undefined) refuseReplaced(model, name, key, etag, report)
  }
  for (const key of Object.keys(model.rejected)) {
    const etag = etags.get(Number(key))
    if (etag === undefined) delete model.rejected[key]
    else if (model.rejected[key]!.replaced && model.rejected[key]!.manifestEtag !== etag)
      refuseReplaced(model, name, key, etag, report)
  }

  // Deferrals are this run's: a version deleted, validated or refused since is no longer deferred.
  const deferred: Record<string, Rejection> = {}
  for (const [key, entry] of Object.entries(previous?.deferred ?? {}))
    if (etags.get(Number(key)) === entry.manifestEtag) deferred[key] = entry
  for (const [version, etag] of etags) {
    const key = String(version)
    if (model.versions[key] || model.rejected[key]?.manifestEtag === etag) continue
    if (budget.left <= 0) break
    budget.left--
    try {
      if (deps.base.names().includes(name) && deps.base.versions(name).includes(version)) {
        throw new Error(`version ${version} is bundled in the static assets; publish under another number`)
      }
      const repo = new Repository(
        overlay(deps.base.index, { ...pointer, models: { ...pointer.models, [name]: model } }, deps.allowed),
      )
      const current = await currentSignature(repo, name, deps)
      model.versions[key] = await validate(deps.bucket, name, version, deps.cache, current, deps.earlierLoads)
      delete model.rejected[key]
      delete deferred[key]
      report.accepted.push(`${name}/${key}`)
      log('info', 'publish.accepted', { model: `${name}/${key}` })
    } catch (error) {
      const reason = (error as Error).message
      if (error instanceof EnvironmentError || isBackendFailure(error)) {
        // Not the candidate's fault: no verdict is stored, and the next run validates it again.
        // Kept as deferred, so the model's status says why the version is not served yet.
        report.errors.push(`${name}/${key} not validated: ${reason}`)
        deferred[key] = { reason, manifestEtag: etag, at: new Date().toISOString(), deferred: true }
        log('warn', 'publish.deferred', { model: `${name}/${key}`, reason })
        continue
      }
      model.rejected[key] = { reason, manifestEtag: etag, at: new Date().toISOString() }
      delete deferred[key]
      report.rejected.push({ model: `${name}/${key}`, reason })
      log('warn', 'publish.rejected', { model: `${name}/${key}`, reason })
    }
  }
  if (Object.keys(deferred).length > 0) model.deferred = deferred
  const numbers = Object.keys(model.versions).map(Number)
  model.current = numbers.length > 0 ? Math.max(...numbers) : null
  return model
}

/** Refuses files uploaded over an accepted version number: versions are immutable once accepted. */
function refuseReplaced(model: PointerModel, name: string, key: string, etag: string, report: PublishReport): void {
  const next =
    Math.max(...Object.keys(model.versions).map(Number), ...Object.keys(model.rejected).map(Number), Number(key)) + 1
  const reason = `version ${key} was accepted before with other files, and an accepted version never changes (serving isolates keep its weights, the prediction cache its answers): publish the new files as a new number, e.g. ${next}`
  model.rejected[key] = { reason, manifestEtag: etag, at: new Date().toISOString(), replaced: true }
  report.rejected.push({ model: `${name}/${key}`, reason })
  log('warn', 'publish.rejected', { model: `${name}/${key}`, reason })
}

const comparable = (pointer: Pointer) =>
  JSON.stringify(pointer.models, (key, value) => (key === 'at' || key === 'validatedAt' ? undefined : value))

/**
 * One pass: validate what is new in the bucket and write the pointer if anything changed.
 * @throws when the bucket cannot be listed or the pointer read or written; the pointer is then untouched
 */
export async function publishVersions(deps: PublishDeps): Promise<PublishReport> {
  const report: PublishReport = { accepted: [], rejected: [], removed: [], published: false, errors: [] }
  const read = await r2(readPointer(deps.bucket), 'reading the pointer').catch((error: Error) => {
    // A pointer that cannot be parsed is rebuilt from the bucket: every version is validated again.
    if (!/is invalid/.test(error.message)) throw error
    report.errors.push(error.message)
    return undefined
  })
  const previous = read === undefined || read === 'unchanged' ? undefined : read.pointer
  const next: Pointer = { schema: 1, publishedAt: new Date().toISOString(), models: {} }
  const names = (await listDir(deps.bucket, '')).dirs.filter(
    (n) => MODEL_NAME.test(n) && (deps.allowed === '*' || deps.allowed.has(n)),
  )
  const budget = { left: MAX_CANDIDATES_PER_RUN }
  for (const name of names.sort()) {
    const model = await nextPointerModel(name, previous?.models[name], next, deps, report, budget)
    const kept = Object.keys(model.versions).length + Object.keys(model.rejected).length
    if (kept + Object.keys(model.deferred ?? {}).length > 0 || model.config !== undefined) next.models[name] = model
  }
  if (previous === undefined || comparable(previous) !== comparable(next)) {
    await r2(writePointer(deps.bucket, next), 'writing the pointer')
    report.published = true
  }
  log(report.rejected.length || report.errors.length ? 'warn' : 'info', 'publish.done', { ...report })
  return report
}
