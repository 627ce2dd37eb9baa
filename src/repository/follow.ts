/**
 * @module repository/follow — how a serving isolate follows the R2 pointer that the cron handler
 * publishes (a cron event runs in some other isolate and cannot reach this one's cache).
 *
 * - The first request of an isolate reads the pointer (bounded by a timeout), since it decides
 *   which versions exist. After that, a request that finds the pointer older than REFRESH_INTERVAL
 *   starts a re-read in `waitUntil` and is itself served from what is already applied: refresh is
 *   never on the request path. The re-read is conditional on the etag, so an unchanged pointer
 *   costs one body-less R2 read.
 * - A changed pointer is applied availability-preserving, model by model: where a version that a
 *   default or a label resolved to is loaded here, its successor is loaded and warmed first (through
 *   the cache); then the pointer switches; then the versions no longer addressed are dropped, and the
 *   cache disposes each when its last lease ends.
 * - R2 unreachable or slow, or a successor that fails to load: this isolate keeps serving what it
 *   has, logs why, and tries again after the next interval.
 */
import { log } from '../core/log'
import type { LoadResult, ModelCache } from '../cache/model-cache'
import { emptyPointer, readPointer } from './pointer'
import type { Pointer, PointerRead } from './pointer'
import { cacheKey, overlay, Repository } from './repository'
import type { ResolvedVersion, Selector } from './repository'
import { withTimeout } from './stores'

/** What following the pointer needs from the rest of the Worker; passed in, so no module reads a global env. */
export interface FollowDeps {
  bucket: R2Bucket | undefined
  /** The R2_MODELS var. */
  allowed: '*' | Set<string>
  intervalMs: number
  /** Longest wait for the pointer (POINTER_READ_TIMEOUT_MS): the first request of an isolate waits this long at most before serving bundled models. */
  readTimeoutMs: number
  cache: ModelCache
  load: (target: ResolvedVersion) => Promise<LoadResult>
}

/** The model (and version or label) a request asks for: `serving` may load it while the first pointer read is under way. */
export interface Wanted {
  name: string
  selector: Selector
}

/** This isolate's view of the pointer, for the admin API. */
export interface PointerStatus {
  /** The pointer's etag as last applied in full; `null` before any pointer. */
  etag: string | null
  readAt: number
  publishedAt: string | null
  /** Why the last read or swap failed, if it did. */
  lastError?: string
  swaps: number
}

const enabled = (deps: FollowDeps) => deps.bucket !== undefined && (deps.allowed === '*' || deps.allowed.size > 0)

/** Every version a request without an explicit version can reach: the default, and each label's. */
function addressed(repo: Repository, name: string): Map<string, number> {
  const aliases = new Map<string, number>()
  if (!repo.names().includes(name)) return aliases
  try {
    aliases.set('default', repo.resolve(name).version)
  } catch {
    return aliases // a broken config.json or version policy: requests get its 503, nothing to warm
  }
  for (const label of Object.keys(repo.config(name).version_labels ?? {})) {
    try {
      aliases.set(`label:${label}`, repo.resolve(name, { label }).version)
    } catch {
      // A label naming a version that does not exist (yet) addresses nothing.
    }
  }
  return aliases
}

/** A serving isolate's copy of the pointer: what it has applied, when it read it, and a read in progress. */
export class PointerFollower {
  private applied: Pointer = emptyPointer()
  private etag: string | null = null
  private readAt = 0
  private publishedAt: string | null = null
  private lastError: string | undefined
  private swaps = 0
  private running: Promise<void> | undefined
  /** An isolate's first pointer read, started before the index it applies over was read (`prefetch`). */
  private early: Promise<PointerRead | 'unchanged'> | undefined
  private memo: { base: Repository; applied: Pointer; allowed: '*' | Set<string>; repo: Repository } | undefined

  constructor(private readonly now: () => number = Date.now) {}

  private merged(base: Repository, applied: Pointer, allowed: '*' | Set<string>): Repository {
    const memo = this.memo
    if (memo?.base !== base || memo.applied !== applied || memo.allowed !== allowed) {
      this.memo = { base, applied, allowed, repo: new Repository(overlay(base.index, applied, allowed)) }
    }
    return this.memo!.repo
  }

  /**
   * The repository as this isolate serves it now: the bundled index `base` with the applied pointer
   * over it. Starts a re-read in `waitUntil` when the pointer is due; waits only on an isolate's first read.
   */
  async serving(
    base: Repository,
    deps: FollowDeps,
    waitUntil?: (p: Promise<unknown>) => void,
    wanted?: Wanted,
  ): Promise<Repository> {
    if (!enabled(deps)) return base
    if (this.readAt === 0) {
      const first = this.running ?? this.start(base, deps)
      if (wanted) this.loadEarly(base, deps, wanted, waitUntil)
      await first
    } else if (this.now() - this.readAt >= deps.intervalMs && !this.running) waitUntil?.(this.start(base, deps))
    return this.merged(base, this.applied, deps.allowed)
  }

  /**
   * While an isolate's first pointer read is still under way, loads the version `wanted` resolves to
   * in the bundled index, through the cache like any load (`preload`: admitted against the budget,
   * then resident and idle): the request that asked then finds it loaded, or waits on its load, once
   * the pointer is read. The pointer decides what is served, never this: when it publishes another
   * version, the request resolves to that one, and this one is an idle model like any other (and is
   * dropped, when it was the default the pointer replaced; `apply`). Not for a model whose
   * config.json splits its traffic, whose version is drawn per request.
   */
  private loadEarly(base: Repository, deps: FollowDeps, wanted: Wanted, waitUntil?: (p: Promise<unknown>) => void) {
    const byDefault = wanted.selector.version === undefined && wanted.selector.label === undefined
    let target: ResolvedVersion
    try {
      if (byDefault && base.config(wanted.name).traffic) return
      target = base.resolve(wanted.name, wanted.selector)
    } catch {
      return // the request's own resolution says what is wrong, once the pointer is read
    }
    const key = cacheKey(target.name, target.version)
    const loading = deps.cache
      .preload(key, target.entry.weightBytes, () => deps.load(target))
      .then(async () => {
        // Asked for by default, but the pointer now addresses another version: it goes, as `apply`
        // drops the versions it replaces (a version or label the request named stays its answer).
        if (!byDefault) return
        await this.running
        const serving = this.merged(base, this.applied, deps.allowed)
        if (![...addressed(serving, target.name).values()].includes(target.version))
          deps.cache.drop(key, 'loaded while the R2 pointer was read, which serves another version')
      })
      .catch((error: unknown) => log('warn', 'model.early_load_failed', { model: key, error: String(error) }))
    waitUntil?.(loading)
  }

  /**
   * Starts an isolate's first pointer read at once, so that it runs while the bundled index is read
   * (neither needs the other): `serving` then applies it. Nothing once the pointer has been read.
   */
  prefetch(deps: FollowDeps): void {
    if (this.readAt !== 0 || this.running || this.early || !enabled(deps)) return
    this.early = this.read(deps)
    // Its failure is reported where `start` awaits it.
    this.early.catch(() => {})
  }

  private read(deps: FollowDeps): Promise<PointerRead | 'unchanged'> {
    return withTimeout(readPointer(deps.bucket!, this.etag), deps.readTimeoutMs, 'R2 (reading the pointer)')
  }

  /** Re-reads the pointer now, whatever the interval, and applies it (cron, admin reload). */
  async followNow(base: Repository, deps: FollowDeps): Promise<PointerStatus> {
    if (this.running) await this.running
    if (enabled(deps)) await this.start(base, deps)
    return this.status()
  }

  private start(base: Repository, deps: FollowDeps): Promise<void> {
    this.readAt = this.now()
    const running = (async () => {
      let read: PointerRead | 'unchanged'
      try {
        const early = this.early
        this.early = undefined
        read = await (early ?? this.read(deps))
      } catch (error) {
        this.lastError = `pointer not read, serving what this isolate has: ${(error as Error).message}`
        log('warn', 'refresh.pointer_unreadable', { error: (error as Error).message })
        return
      }
      if (read !== 'unchanged') await this.apply(base, read, deps)
    })().finally(() => {
      if (this.running === running) this.running = undefined
    })
    this.running = running
    return running
  }

  private async apply(base: Repository, read: PointerRead, deps: FollowDeps): Promise<void> {
    const { cache } = deps
    const previouslyPublished = this.applied.publishedAt
    const before = this.merged(base, this.applied, deps.allowed)
    const next: Pointer = { ...read.pointer, models: { ...read.pointer.models } }
    const after = new Repository(overlay(base.index, next, deps.allowed))
    const outgoing: string[] = []
    let complete = true
    // Only models with a part in either pointer can change; bundled-only models stay as they are.
    for (const name of new Set([...Object.keys(this.applied.models), ...Object.keys(next.models)])) {
      try {
        const was = addressed(before, name)
        const will = addressed(after, name)
        // Warm what takes over an alias whose version is warm here, before anyone is switched to it.
        const incoming = [...will].filter(
          ([alias, v]) => was.has(alias) && was.get(alias) !== v && cache.isAvailable(cacheKey(name, was.get(alias)!)),
        )
        for (const version of new Set(incoming.map(([, v]) => v))) {
          const target = after.resolve(name, { version })
          const started = this.now()
          const lease = await cache.acquire(cacheKey(name, version), target.entry.weightBytes, () => deps.load(target))
          lease.release()
          log('info', 'refresh.warmed', { model: cacheKey(name, version), ms: this.now() - started })
        }
        const still = new Set(will.values())
        outgoing.push(...[...new Set(was.values())].filter((v) => !still.has(v)).map((v) => cacheKey(name, v)))
      } catch (error) {
        // Keep this model as it was; the rest of the pointer still applies. The etag is not recorded,
        // so the next interval tries again.
        complete = false
        const previous = this.applied.models[name]
        if (previous) next.models[name] = previous
        else delete next.models[name]
        this.lastError = `${name}: kept the current version, the new one failed to load: ${(error as Error).message}`
        log('error', 'refresh.swap_failed', { model: name, error: (error as Error).message })
      }
    }
    this.applied = next
    this.publishedAt = next.publishedAt
    if (complete) {
      this.etag = read.etag
      this.lastError = undefined
    }
    for (const key of outgoing) {
      if (cache.drop(key, 'no longer addressed after a refresh')) this.swaps++
    }
    // An empty bucket has no pointer, so every interval reads "nothing": say so only when something changed.
    if (next.publishedAt !== previouslyPublished || outgoing.length > 0 || !complete) {
      log('info', 'refresh.applied', { etag: read.etag, publishedAt: next.publishedAt, complete, retired: outgoing })
    }
  }

  /** This isolate's view of the pointer. */
  status(): PointerStatus {
    const { etag, readAt, publishedAt, lastError, swaps } = this
    return { etag, readAt, publishedAt, swaps, ...(lastError ? { lastError } : {}) }
  }
}
