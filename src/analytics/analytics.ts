/**
 * @module analytics/analytics — the fleet's view: Workers Analytics Engine data points, written to the optional
 * dataset bound as `INFERENCE`. `/metrics` answers for the one isolate that took the scrape; these
 * points, queried with SQL (docs/analytics.md, docs/analytics/*.sql), add up over every isolate and colo.
 *
 * What is written: one point per inference request (`:predict`, `:classify`, v2 `infer`, the `Models`
 * entrypoint's `run` and `infer`), and one per model load, unload and shadow run, in the columns of
 * src/analytics/schema.ts (where docs/analytics.md's table comes from).
 *
 * Each layer notes what it knows on the request's `RequestRecord` as the request passes through it —
 * the entry point (route, colo, bytes), traffic control (version, rule, queue time, shadow), the
 * prediction (model-cache and prediction-cache outcomes, rows, inference time) — and the entry point
 * writes the one point at the end. Loads and unloads happen inside the cache, which has no bindings:
 * they wait in `IsolateAnalytics` for the next invocation that writes (their own or the next one).
 *
 * Writing never fails a request: `writeDataPoint` is not awaited and is called in a try/catch, and an
 * invocation writes at most 25 points (the platform's limit; the rest wait for the next invocation).
 * Without the binding nothing is built and nothing is written.
 * @see https://developers.cloudflare.com/analytics/analytics-engine/
 */
import { BudgetBusyError } from '../cache/admission'
import { ModelUnavailableError } from '../core/errors'
import { log } from '../core/log'
import { keyLabels } from '../core/metrics'
import type { ModelLease } from '../cache/lease'
import type { ResolvedVersion } from '../repository/repository'
import { COLUMNS, LIMITS, MAX_BLOB_BYTES } from './schema'

type Columns = (typeof COLUMNS)[number]
type BlobName = Extract<Columns, { kind: 'blob' }>['name']
type DoubleName = Extract<Columns, { kind: 'double' }>['name']

/** What a point says, by column name: strings for blobs (and the index, which is `model`), numbers for doubles. */
export type Fields = { [K in BlobName]?: string } & { [K in DoubleName]?: number }

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** `text` cut to at most `bytes` bytes of UTF-8, never in the middle of a character. */
export function cut(text: string, bytes: number): string {
  if (text.length * 3 <= bytes) return text
  const buffer = new Uint8Array(bytes)
  const { written } = encoder.encodeInto(text, buffer)
  return decoder.decode(buffer.subarray(0, written))
}

/** The data point of `fields`: every column in schema order, blobs cut, doubles finite. */
export function dataPoint(fields: Fields): AnalyticsEngineDataPoint {
  const values = fields as Record<string, string | number | undefined>
  const blobs: string[] = []
  const doubles: number[] = []
  let index = ''
  for (const column of COLUMNS) {
    const value = values[column.name]
    if (column.kind === 'index') index = cut(String(value || '-'), LIMITS.indexBytes)
    else if (column.kind === 'blob') blobs.push(cut(value === undefined ? '' : String(value), MAX_BLOB_BYTES))
    else doubles.push(typeof value === 'number' && Number.isFinite(value) ? value : 0)
  }
  return { indexes: [index], blobs, doubles }
}

/** The dataset, when the optional binding is there: it is not in the generated `Env` (wrangler.toml has it commented). */
export function datasetOf(env: Env): AnalyticsEngineDataset | undefined {
  const dataset = (env as { INFERENCE?: AnalyticsEngineDataset }).INFERENCE
  return typeof dataset?.writeDataPoint === 'function' ? dataset : undefined
}

/** One invocation's writes: at most `LIMITS.pointsPerInvocation`, none of them able to throw. */
export class PointWriter {
  private written = 0

  constructor(private readonly dataset: AnalyticsEngineDataset) {}

  /** Points this invocation may still write. */
  get room(): number {
    return LIMITS.pointsPerInvocation - this.written
  }

  /** Writes one point, if the invocation has room for it; returns whether it was handed over. */
  write(fields: Fields): boolean {
    if (this.room <= 0) return false
    this.written++
    try {
      this.dataset.writeDataPoint(dataPoint(fields))
    } catch (error) {
      // The point is lost; the request is not.
      log('warn', 'analytics.write_failed', {
        point: fields.event,
        model: fields.model,
        error: (error as Error)?.message,
      })
    }
    return true
  }
}

/** Load and unload points waiting for an invocation to write them: past this many, the oldest go. */
export const MAX_PENDING_EVENTS = 100

/**
 * What analytics keeps per isolate: when the isolate began (for `isolate_age_ms`), and the model loads
 * and unloads the cache reported, until an invocation writes them. Owned by the isolate state.
 */
export class IsolateAnalytics {
  private started: number
  private pending: Fields[] = []

  /**
   * @param now the isolate's clock
   * @param residentBytes the bytes the isolate's models hold at rest
   * @param backend the tf.js backend running now (empty before one is chosen)
   */
  constructor(
    private readonly now: () => number,
    private readonly residentBytes: () => number,
    private readonly backend: () => string,
  ) {
    this.started = now()
  }

  /**
   * When the isolate's state was made. The Worker makes it as its module is evaluated (src/index.ts),
   * where workerd's clock reads 0 (it gives the time to requests only): such a state started at its
   * isolate's first request (`requestStarted`).
   */
  get startedAt(): number {
    this.requestStarted()
    return this.started
  }

  /** Called as each request starts: the first one of an isolate whose state was made before any clock, dates it. */
  requestStarted(): void {
    if (this.started === 0) this.started = this.now()
  }

  /** The fields every point carries about the isolate. */
  context(): Fields {
    return {
      isolate_age_ms: this.now() - this.startedAt,
      backend: this.backend(),
      resident_bytes: this.residentBytes(),
    }
  }

  /** The cache's hooks (src/cache/model-cache.ts `onLoad`, `onLoadFailed`, `onUnload`), each queueing a point. */
  loaded(key: string, ms: number, built: { memoryBytes: number; reload: boolean }): void {
    this.queue({
      ...keyLabels(key),
      event: 'load',
      status_class: '2xx',
      reason: built.reload ? 'reload' : 'load',
      load_ms: ms,
      model_memory_bytes: built.memoryBytes,
    })
  }

  loadFailed(key: string, ms: number, message: string): void {
    this.queue({
      ...keyLabels(key),
      event: 'load',
      status_class: '5xx',
      error_code: 'load_failed',
      reason: cut(message, 256),
      load_ms: ms,
    })
  }

  unloaded(key: string, reason: string, memoryBytes: number): void {
    this.queue({
      ...keyLabels(key),
      event: 'unload',
      status_class: '2xx',
      reason: cut(reason, 256),
      model_memory_bytes: memoryBytes,
    })
  }

  /** Points waiting to be written. */
  get pendingCount(): number {
    return this.pending.length
  }

  private queue(fields: Fields): void {
    this.pending.push({ ...this.context(), ...fields })
    if (this.pending.length > MAX_PENDING_EVENTS) this.pending.shift()
  }

  /** Writes the waiting points, oldest first, as far as the invocation has room. */
  drainInto(writer: PointWriter): void {
    while (this.pending.length > 0 && writer.room > 0) writer.write(this.pending.shift()!)
  }

  /** Writes the waiting points with `env`'s dataset: entry points that write no request point of their own (the cron). */
  flush(env: Env): void {
    const dataset = datasetOf(env)
    if (dataset) this.drainInto(new PointWriter(dataset))
  }
}

/** A short, stable code for a failed request's error, for grouping (the message is in the logs). */
export function errorCode(status: number, error: unknown): string {
  if (status < 400) return ''
  if (error instanceof BudgetBusyError) return 'memory_busy'
  if (error instanceof ModelUnavailableError) return 'model_unavailable'
  const codes: Record<number, string> = {
    400: 'bad_request',
    404: 'not_found',
    405: 'method_not_allowed',
    413: 'too_large',
    415: 'unsupported_media_type',
    429: 'too_many_requests',
    500: 'internal',
    503: 'unavailable',
  }
  return codes[status] ?? `http_${status}`
}

/**
 * One inference request's point, filled in as the request passes through each layer (`note`,
 * `leased`, `routed`) and written once by its entry point (`finish`).
 */
export class RequestRecord {
  private readonly facts: Fields
  private finished = false

  constructor(
    private readonly writer: PointWriter,
    private readonly isolate: IsolateAnalytics,
    facts: Fields,
  ) {
    this.facts = { ...facts }
  }

  /** Adds what a layer knows; later notes win. */
  note(facts: Fields): void {
    Object.assign(this.facts, facts)
  }

  /** The request has a slot: the version it goes to, by which rule, after how long a wait, and its shadow draw. */
  routed(
    target: ResolvedVersion,
    rule: string,
    queueMs: number,
    shadow: ResolvedVersion | string | number | undefined,
  ): void {
    const shadowVersion = shadow === undefined ? '' : String(typeof shadow === 'object' ? shadow.version : shadow)
    this.note({
      model: target.name,
      version: String(target.version),
      traffic_rule: rule,
      queue_ms: queueMs,
      shadow_version: shadowVersion,
      source: target.entry.source ?? 'assets',
    })
  }

  /** The request holds a model: hit, miss or joined, how long it waited for the load, the model's memory. */
  leased({ target, lease }: ModelLease, memoryBytes: number | undefined): void {
    this.note({
      model: target.name,
      version: String(target.version),
      model_cache: lease.outcome,
      load_ms: lease.waitedMs,
      model_memory_bytes: memoryBytes ?? 0,
      source: target.entry.source ?? 'assets',
    })
  }

  /** Writes the request's point (once), then the load and unload points waiting, as far as the invocation has room. */
  finish(status: number, error: unknown, facts: Fields = {}): void {
    if (this.finished) return
    this.finished = true
    const code = status >= 400 ? (this.facts.error_code ?? errorCode(status, error)) : ''
    this.writer.write({
      ...this.isolate.context(),
      ...this.facts,
      ...facts,
      event: 'request',
      status,
      status_class: `${Math.floor(status / 100)}xx`,
      error_code: code,
    })
    this.isolate.drainInto(this.writer)
  }

  /** Writes a shadow run's point (src/traffic/traffic.ts), after the request's response, in the same invocation. */
  shadow(
    outcome: 'compared' | 'failed' | 'skipped',
    shadowVersion: number | string,
    comparison?: { disagreed: boolean; maxAbsDiff: number | null },
  ): void {
    const { model, version, route, colo, request_id, source } = this.facts
    this.writer.write({
      ...this.isolate.context(),
      model,
      version,
      route,
      colo,
      request_id,
      source,
      event: 'shadow',
      status_class: outcome === 'compared' ? '2xx' : '5xx',
      error_code: outcome === 'compared' ? '' : `shadow_${outcome}`,
      reason: outcome,
      shadow_version: String(shadowVersion),
      disagreed: comparison?.disagreed ? 1 : 0,
      max_abs_diff: comparison?.maxAbsDiff ?? 0,
    })
  }
}
