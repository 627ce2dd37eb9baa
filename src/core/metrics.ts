/**
 * @module core/metrics — this isolate's request counts and latency histograms, in module scope like the
 * model cache, rendered in Prometheus' text format by http/routes/prometheus.ts.
 *
 * Each isolate counts only what it served: Prometheus sums across scrapes of many isolates, and a
 * counter that restarts from zero (a new isolate) is a reset, which `rate()` handles.
 * In production `Date.now()` does not advance during pure computation, so inference durations read
 * 0 there; they are real in `wrangler dev`, and load durations (I/O-bound) are honest in both.
 */

/** Upper bounds in seconds, from a warm 1 ms inference to a 10 s cold load of a big model. */
export const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

class Histogram {
  readonly counts = new Array<number>(BUCKETS.length).fill(0)
  count = 0
  sum = 0

  observe(seconds: number): void {
    this.count++
    this.sum += seconds
    // Cumulative buckets, as the exposition format wants them: every bound at or above the value.
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= BUCKETS[i]!) this.counts[i]!++
  }
}

type Labels = Record<string, string>

/** A family of series keyed by their label values. */
class Family<T> {
  readonly series = new Map<string, { labels: Labels; value: T }>()
  constructor(private readonly make: () => T) {}

  get(labels: Labels): T {
    const key = JSON.stringify(labels)
    let entry = this.series.get(key)
    if (!entry) this.series.set(key, (entry = { labels, value: this.make() }))
    return entry.value
  }
}

const counter = () => ({ value: 0 })

/** Splits a cache key, `name/version`, into labels; a name never contains '/', so the last one splits them. */
export function keyLabels(key: string): { model: string; version: string } {
  const at = key.lastIndexOf('/')
  return { model: key.slice(0, at), version: key.slice(at + 1) }
}

/** What this isolate recorded: requests by model, version and status, and the two duration histograms. */
export class Metrics {
  private readonly requests = new Family(counter)
  private readonly inference = new Family(() => new Histogram())
  private readonly loads = new Family(() => new Histogram())
  private readonly predictionCache = { hit: new Family(counter), miss: new Family(counter) }
  private readonly routed = new Family(counter)
  private readonly rejections = new Family(counter)
  private readonly shadows = new Family(counter)
  private readonly disagreements = new Family(counter)

  /** Counts one request routed to `version` of `model`, and by which rule it got there (src/traffic/traffic.ts). */
  recordRouted(model: string, version: number, rule: string): void {
    this.routed.get({ model, version: String(version), rule }).value++
  }

  /** Counts one request answered 429: `reason` is `model` (its max_concurrent/max_queue) or `isolate` (MAX_CONCURRENT/MAX_QUEUE). */
  recordRejection(model: string, reason: 'model' | 'isolate'): void {
    this.rejections.get({ model, reason }).value++
  }

  /**
   * Counts one shadow run: `outcome` is `compared`, `failed` (did not load or run) or `skipped`, with
   * `reason` `backlog` (MAX_SHADOWS_PENDING waiting already) or `memory` (no room in the budget for its copy).
   */
  recordShadow(
    model: string,
    version: number,
    shadow: number | string,
    outcome: 'compared' | 'failed' | 'skipped',
    disagreed = false,
    reason?: 'backlog' | 'memory',
  ): void {
    const labels = { model, version: String(version), shadow_version: String(shadow) }
    this.shadows.get({ ...labels, outcome, ...(reason ? { reason } : {}) }).value++
    if (disagreed) this.disagreements.get(labels).value++
  }

  /** Counts one answered request and, if it ran a model, how long the inference took. */
  recordRequest(model: string | undefined, version: string | undefined, status: number, inferMs?: number): void {
    this.requests.get({ model: model ?? '', version: version ?? '', status: String(status) }).value++
    if (model !== undefined && inferMs !== undefined)
      this.inference.get({ model, version: version ?? '' }).observe(inferMs / 1000)
  }

  /** Observes one finished model build (fetch, build and warmup): the cache's `onLoad` hook. */
  recordLoad(key: string, ms: number): void {
    this.loads.get(keyLabels(key)).observe(ms / 1000)
  }

  /** Counts one lookup of the prediction cache of a model that has one (src/cache/prediction-cache.ts). */
  recordPredictionCache(model: string, outcome: 'hit' | 'miss'): void {
    this.predictionCache[outcome].get({ model }).value++
  }

  /** The request counter, the two histograms and the prediction cache's counters, as text-format families. */
  families(): string[] {
    return [
      counterFamily(
        'warmserve_requests_total',
        'Requests answered by this isolate, by the model and version that served them (empty when none did) and status.',
        this.requests,
      ),
      family(
        'warmserve_inference_duration_seconds',
        'histogram',
        'Model run time per request. Deployed Workers do not advance the clock during computation, so this reads 0 there; it is real locally.',
        histogramSamples('warmserve_inference_duration_seconds', this.inference),
      ),
      family(
        'warmserve_model_load_duration_seconds',
        'histogram',
        'Model loads (fetch, build, warmup) and reloads in this isolate.',
        histogramSamples('warmserve_model_load_duration_seconds', this.loads),
      ),
      counterFamily(
        'warmserve_prediction_cache_hits_total',
        'Predictions answered from the prediction cache (response_cache in config.json), by model.',
        this.predictionCache.hit,
      ),
      counterFamily(
        'warmserve_prediction_cache_misses_total',
        'Predictions of models with a prediction cache that ran the model: not cached, expired, bypassed (Cache-Control: no-cache) or no Cache API.',
        this.predictionCache.miss,
      ),
      counterFamily(
        'warmserve_traffic_total',
        'Requests routed to each version of a model, by rule: named (the path names a version or label), default, weighted (random split) or sticky (split by a header).',
        this.routed,
      ),
      counterFamily(
        'warmserve_rejections_total',
        'Requests answered 429, by model and reason: model (its max_concurrent and max_queue) or isolate (MAX_CONCURRENT and MAX_QUEUE).',
        this.rejections,
      ),
      counterFamily(
        'warmserve_shadow_requests_total',
        'Requests also run on the shadow version after their response, by outcome: compared, failed (the shadow did not load or run; the client lost nothing) or skipped, by reason: backlog (32 shadow runs waiting already: the shadow cannot keep up) or memory (no room in CACHE_BUDGET_BYTES for the copy of its inputs and outputs).',
        this.shadows,
      ),
      counterFamily(
        'warmserve_shadow_disagreements_total',
        "Compared shadow runs whose top-1 class differed from the served version's in some row, or whose outputs differed in shape.",
        this.disagreements,
      ),
    ]
  }
}

function counterFamily(name: string, help: string, fam: Family<{ value: number }>): string {
  return family(
    name,
    'counter',
    help,
    [...fam.series.values()].map(({ labels, value }) => sample(name, value.value, labels)),
  )
}

// Label values escape backslash, double quote and newline, as the text format requires.
const escape = (value: string) => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')

const labelText = (labels: Labels) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`)
  return parts.length > 0 ? `{${parts.join(',')}}` : ''
}

/** A number as the text format writes it (`+Inf`, `NaN`). */
const num = (value: number) =>
  Number.isNaN(value) ? 'NaN' : value === Infinity ? '+Inf' : value === -Infinity ? '-Inf' : String(value)

/** One metric family in the text format: HELP, TYPE, then its samples. */
export function family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string, samples: string[]): string {
  return [
    `# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`,
    `# TYPE ${name} ${type}`,
    ...samples,
  ].join('\n')
}

/** A sample line. */
export const sample = (name: string, value: number, labels: Labels = {}) => `${name}${labelText(labels)} ${num(value)}`

function histogramSamples(name: string, fam: Family<Histogram>): string[] {
  return [...fam.series.values()].flatMap(({ labels, value }) => [
    ...BUCKETS.map((le, i) => sample(`${name}_bucket`, value.counts[i]!, { ...labels, le: String(le) })),
    sample(`${name}_bucket`, value.count, { ...labels, le: '+Inf' }),
    sample(`${name}_sum`, value.sum, labels),
    sample(`${name}_count`, value.count, labels),
  ])
}
