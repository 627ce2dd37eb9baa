/**
 * @module analytics/schema — the Analytics Engine dataset's columns, defined once, as data: points
 * are built from them (src/analytics/analytics.ts), docs/analytics.md's table is generated from them
 * (`npx node scripts/dev/analytics-schema.mjs`), and test/analytics.test.ts checks both. No imports, so
 * the script runs it in Node as it is.
 */

/**
 * Analytics Engine's limits on one data point and one invocation
 * (developers.cloudflare.com/analytics/analytics-engine/limits/); its "16 KB" of blobs is read as
 * the smaller 16,000 bytes.
 */
export const LIMITS = {
  blobs: 20,
  doubles: 20,
  indexBytes: 96,
  blobsTotalBytes: 16_000,
  pointsPerInvocation: 25,
} as const

/** Bytes each blob is cut to: 15 blobs of at most 1 KiB can never pass the 16 KB of a point together. */
export const MAX_BLOB_BYTES = 1024

/** One column of the dataset; its SQL name (`index1`, `blob3`, `double5`) is its kind and place among its kind. */
export interface Column {
  name: string
  kind: 'index' | 'blob' | 'double'
  description: string
}

/**
 * The schema, in column order: a column's place among its kind is its SQL name, so columns are only
 * ever added at the end of their kind (a deployed dataset keeps the old points).
 */
export const COLUMNS = [
  {
    name: 'model',
    kind: 'index',
    description:
      "The model's name, cut to 96 bytes: the sampling key, so a busy model is sampled apart from a quiet one. `-` when the request named none.",
  },
  { name: 'event', kind: 'blob', description: '`request`, `load`, `unload` or `shadow`.' },
  { name: 'model', kind: 'blob', description: "The model's full name, as the request named it." },
  {
    name: 'version',
    kind: 'blob',
    description: 'The version that answered (or was loaded, unloaded, shadowed); empty when routing failed.',
  },
  {
    name: 'route',
    kind: 'blob',
    description:
      'request: `tf-serving:predict`, `tf-serving:classify` (and `tf-serving:detect`, `tf-serving:embed` once served), `v2:infer`, `rpc:run`, `rpc:infer`; shadow: the route of the request it shadowed; else empty.',
  },
  {
    name: 'status_class',
    kind: 'blob',
    description:
      '`2xx`, `4xx` or `5xx`: the answer (request), whether the load succeeded (load), whether the shadow ran (shadow); `2xx` for unload.',
  },
  {
    name: 'error_code',
    kind: 'blob',
    description:
      'Empty on success; else `bad_request`, `not_found`, `method_not_allowed`, `too_large`, `unsupported_media_type`, `capacity_model` / `capacity_isolate` / `too_many_requests` (429), `model_unavailable`, `memory_busy`, `unavailable` (503), `internal` (500), `load_failed`, `shadow_failed`, `shadow_skipped` or `http_<status>`.',
  },
  {
    name: 'colo',
    kind: 'blob',
    description:
      'The Cloudflare data center that served the request (`request.cf.colo`); empty for RPC calls and lifecycle events.',
  },
  {
    name: 'model_cache',
    kind: 'blob',
    description:
      'request: `hit` (the model was warm in this isolate), `miss` (this request loaded it) or `joined` (it waited for a load already under way, i.e. coalesced); empty when no model was leased.',
  },
  {
    name: 'prediction_cache',
    kind: 'blob',
    description: '`hit` or `miss` for a model with `response_cache`; empty for one without.',
  },
  {
    name: 'traffic_rule',
    kind: 'blob',
    description:
      'How the request got its version: `named`, `default`, `weighted` or `sticky` (src/traffic/traffic.ts).',
  },
  {
    name: 'shadow_version',
    kind: 'blob',
    description: 'request: the shadow version this request was drawn for, else empty; shadow: the version that ran it.',
  },
  { name: 'backend', kind: 'blob', description: "tf.js's backend in this isolate: `wasm` or `cpu`." },
  {
    name: 'source',
    kind: 'blob',
    description: 'Where the version comes from: `assets` (bundled) or `r2`; empty when unknown.',
  },
  {
    name: 'reason',
    kind: 'blob',
    description:
      'load: `load` or `reload`, or the error of a failed load; unload: why (`evicted: budget`, `evicted: max models`, `dropped: <reason>`, `replaced: reloaded`); shadow: `compared`, `failed` or `skipped`.',
  },
  {
    name: 'request_id',
    kind: 'blob',
    description: "The request's `X-Request-Id` (as in the access log); empty for RPC calls and lifecycle events.",
  },
  {
    name: 'total_ms',
    kind: 'double',
    description: 'request: from the request reaching the Worker to its response being ready.',
  },
  {
    name: 'queue_ms',
    kind: 'double',
    description: 'request: time waiting for a slot under `max_concurrent` / MAX_CONCURRENT.',
  },
  {
    name: 'load_ms',
    kind: 'double',
    description:
      'request: time waiting for the model to load (0 on a hit); load: the build (fetch, build, warmup), or the time until it failed.',
  },
  {
    name: 'decode_ms',
    kind: 'double',
    description: 'request: time decoding and preprocessing a raw image body (0 otherwise).',
  },
  {
    name: 'infer_ms',
    kind: 'double',
    description:
      "request: the model's run (0 when the prediction cache answered). Deployed Workers do not advance the clock during computation, so it reads 0 there.",
  },
  {
    name: 'rows',
    kind: 'double',
    description:
      "request: the batch's rows (0 when it never got that far, or the prediction cache answered before the inputs were decoded).",
  },
  {
    name: 'bytes_in',
    kind: 'double',
    description: "request: the body's `Content-Length` (0 when absent, and for RPC calls).",
  },
  { name: 'bytes_out', kind: 'double', description: "request: the response body's bytes as sent (0 for RPC calls)." },
  {
    name: 'status',
    kind: 'double',
    description:
      'request: the HTTP status (for RPC, the `status` a rejection carries, 200 on success); 0 for other events.',
  },
  {
    name: 'isolate_age_ms',
    kind: 'double',
    description:
      "Time since this isolate's state was created: small values on a request with `model_cache = 'miss'` are cold starts.",
  },
  {
    name: 'model_memory_bytes',
    kind: 'double',
    description:
      "The model's measured memory with one row running (`warmserve_model_memory_bytes`); 0 when not loaded.",
  },
  {
    name: 'resident_bytes',
    kind: 'double',
    description: 'Bytes all the models of this isolate hold at rest, after the event.',
  },
  {
    name: 'disagreed',
    kind: 'double',
    description: "shadow: 1 when the shadow's top-1 class differed in some row (or its outputs' shapes did), else 0.",
  },
  {
    name: 'max_abs_diff',
    kind: 'double',
    description: "shadow: the largest absolute difference between the served version's outputs and the shadow's.",
  },
] as const satisfies readonly Column[]

/** A column's SQL name: `index1`, `blob1`…`blob20`, `double1`…`double20`. */
export function sqlName(column: Column): string {
  const place = COLUMNS.filter((c) => c.kind === column.kind).indexOf(column as (typeof COLUMNS)[number]) + 1
  return `${column.kind}${place}`
}

/** The schema as a Markdown table, as docs/analytics.md shows it (test/analytics.test.ts compares them). */
export function schemaTable(): string {
  const rows = COLUMNS.map(
    (c) => `| \`${sqlName(c)}\` | \`${c.name}\` | ${c.kind === 'double' ? 'double' : 'string'} | ${c.description} |`,
  )
  return ['| column | name | type | meaning |', '|---|---|---|---|', ...rows].join('\n')
}
