/** @module core/config — limits and cache settings: named defaults, each overridable by a `[vars]` entry. */
import { z } from 'zod'

/** An isolate's memory on Cloudflare, JavaScript and WebAssembly heaps together; passing it kills the isolate. */
export const ISOLATE_MEMORY_BYTES = 128_000_000
const MiB = 1024 * 1024
/**
 * tf.js's wasm backend's heap before any model: its INITIAL_MEMORY, of which models later use some
 * (counting it whole errs safe).
 */
export const TF_INITIAL_HEAP_BYTES = 16 * MiB
/**
 * The Worker's JavaScript heap between requests, measured in workerd (`node
 * scripts/dev/measure-js-heap.mjs`, docs/memory.md "Measuring the JavaScript side"): V8's heap as
 * committed (`totalSize`) and the ArrayBuffers it keeps (`backingStorageSize`) after a forced
 * collection, after start, a predict, the largest JPEG and WebP the limits allow through MobileNetV2,
 * the largest JSON bodies and four at once: at most 18.2 + 1.1 = 19.3 MB, rounded up.
 * test/e2e/js-heap.test.ts fails if the two together grow past this.
 */
export const JS_HEAP_BYTES = 20 * MiB
/** What the runtime spends before any model: tf.js's initial heap and the JavaScript heap, both measured. */
export const RUNTIME_BASELINE_BYTES = TF_INITIAL_HEAP_BYTES + JS_HEAP_BYTES
/**
 * Share of the rest kept free: what loads and evictions of several models leave in pieces on the wasm
 * heap (it never shrinks), which no model's figure counts. 10 %: a model's own runs are in its figure
 * (build-index measures its load and three runs of its rows, and the runs after the first may not fit
 * where its activations were: nanodet 56.7 → 77.6 MB), which the 22 % of before stood in for. With it the
 * budget holds @vladmandic/human's nanodet, the zoo's largest, with its 2.1 MB input.
 */
export const MEMORY_HEADROOM = 0.1

/** Defaults, with the reason for each. */
export const DEFAULTS = {
  /** A 224×224×3 float image as JSON is ~3.2 MB at full float precision; leave room for 2×. */
  MAX_BODY_BYTES: 8 * 1024 * 1024,
  /**
   * Longest wait for a request's whole body, from the moment the route starts reading it (it holds a
   * traffic slot by then): a full MAX_BODY_BYTES over a 2 Mbit/s uplink takes ~34 s. A client that
   * sends slower, or stops sending without closing, gets 408 and its slot goes to the next request.
   */
  BODY_READ_TIMEOUT_MS: 45_000,
  /** Rows per predict request, as TF Serving's `max_batch_size` bounds a batch. */
  MAX_BATCH_SIZE: 64,
  /** Elements per request across all inputs: 64 digits images are 50 176, one 224² RGB image 150 528. */
  MAX_TENSOR_ELEMENTS: 4_000_000,
  /**
   * Bytes of memory models (weights, kernel state), their runs (activations), requests' inputs and the
   * image decodes under way may hold at once, as runtime/footprint.ts and protocols/images/ count
   * them: the isolate's 128 MB less the runtime's baseline, less headroom (docs/memory.md).
   */
  CACHE_BUDGET_BYTES: Math.floor((ISOLATE_MEMORY_BYTES - RUNTIME_BASELINE_BYTES) * (1 - MEMORY_HEADROOM)),
  /**
   * Bytes of JavaScript memory the inference requests in flight may hold together: each reserves what
   * its body may cost before reading it (3× a JSON body's bytes, 2× a binary or image one's;
   * traffic/request-memory.ts) and waits, first come first served, while the rest hold it. 32 MiB: the
   * largest JSON bodies run one at a time, small requests (iris) pass at once (docs/memory.md).
   */
  REQUEST_MEMORY_BYTES: 32 * 1024 * 1024,
  /** Models held at once per isolate: each costs memory beyond its weights (graph, kernels, warmup buffers). */
  MAX_MODELS_LOADED: 16,
  /** A model unused this long is dropped by the cron handler. */
  MODEL_IDLE_TTL_SECONDS: 15 * 60,
  /** First wait after a failed load; it doubles per consecutive failure … */
  LOAD_BACKOFF_BASE_MS: 1_000,
  /** … up to this bound, so a broken model cannot cause a load storm nor stay locked out long. */
  LOAD_BACKOFF_MAX_MS: 60_000,
  /** One file read from static assets or R2; a store that hangs longer counts as down, so the load fails with 503. */
  STORE_READ_TIMEOUT_MS: 15_000,
  /** An isolate's first read of the R2 pointer: its first request waits this long at most, then serves bundled models. */
  POINTER_READ_TIMEOUT_MS: 2_000,
  /**
   * Seconds between a serving isolate's reads of the R2 pointer: a new version goes live within
   * this long of the cron publishing it, at one cheap conditional R2 read per isolate per interval.
   */
  REFRESH_INTERVAL: 30,
  /**
   * One encoded image (a raw body, a `b64`, a BYTES element): an 8-megapixel photo is 2–5 MB as a
   * JPEG; the decoder holds these bytes in its heap beside the pixels.
   */
  MAX_IMAGE_BYTES: 8 * 1024 * 1024,
  /**
   * Pixels of one decoded image, read from its header before decoding. MAX_IMAGE_DECODE_BYTES binds
   * first for most images (a baseline JPEG up to about 3 MP, an RGB PNG 2 MP); this bounds the rest.
   */
  MAX_IMAGE_PIXELS: 4_000_000,
  /**
   * Bytes one image's decode may allocate beyond its decoder's initial 16 MiB heap (JavaScript copies
   * of its input and output, the heap's growth, a PNG's inflated rows), worked out from its header
   * before decoding. Decodes run one at a time and keep no heap after, so images take at most 16 MiB +
   * this of the isolate (docs/memory.md has the isolate's arithmetic).
   */
  MAX_IMAGE_DECODE_BYTES: 16 * 1024 * 1024,
  /**
   * Pixels of all the images of one request together, across all its inputs: decoding costs 45–130
   * ms a megapixel, so 16 MP is about 2 s of CPU at most.
   */
  MAX_REQUEST_IMAGE_PIXELS: 16_000_000,
  /**
   * One text (a `text` string, an `instances` string, a BYTES element), in UTF-8 bytes: 16 KiB is some
   * 3,000 words, past what a 512-token encoder reads; longer texts are cut to `max_length` tokens anyway.
   */
  MAX_TEXT_BYTES: 16 * 1024,
  /** Texts in one `:classify` or `:embed` request, as Workers AI's text-embeddings takes at most 100. */
  MAX_TEXTS: 100,
} as const

export type Config = { -readonly [K in keyof typeof DEFAULTS]: number }

const positiveInt = z.coerce.number().int().positive()

const schema = z.object(
  Object.fromEntries(Object.entries(DEFAULTS).map(([key, value]) => [key, positiveInt.default(value)])) as {
    [K in keyof Config]: z.ZodDefault<typeof positiveInt>
  },
)

// A memo, not state: each env object's vars parse to the same immutable Config and IsolateLimits,
// so they are parsed once.
interface Parsed {
  config?: Config
  limits?: IsolateLimits
  r2?: { value: string | undefined; allowed: '*' | Set<string> }
}

const parsed = new WeakMap<object, Parsed>()

/** The memo entry of `env`. */
function parsedOf(env: object): Parsed {
  let entry = parsed.get(env)
  if (!entry) parsed.set(env, (entry = {}))
  return entry
}

/** Vars and secrets that are not numbers, so not in DEFAULTS. `wrangler types` cannot see secrets. */
export interface StringVars {
  /** Models whose versions may come from the R2 bucket: `*` (the default) for all, a comma list, or empty for none. */
  R2_MODELS?: string
  /** Bearer token of the admin API; unset turns the admin API off (404). Set with `wrangler secret put`. */
  ADMIN_TOKEN?: string
  /** `off` builds the model for every request and disposes it after: only to measure what the cache saves. */
  MODEL_CACHE?: string
  /** tf.js backend: `wasm` (SIMD; the default, falling back to cpu if it cannot start) or `cpu`. */
  TF_BACKEND?: string
  /** Origins browsers may call the API from: `*`, or a comma list of origins. Unset: no CORS headers at all. */
  CORS_ORIGINS?: string
  /** Which requests get an access-log line: `all`, `errors` (the default: answered 4xx or 5xx), or `off` (http/middleware/access-log.ts). */
  ACCESS_LOG?: string
}

/**
 * The isolate-wide admission limits (src/traffic/traffic.ts), over every model together: `MAX_CONCURRENT`
 * requests in flight at once, `MAX_QUEUE` more waiting for a slot, first come first served; beyond
 * that, 429. Unset: no limit (each model's `max_concurrent`/`max_queue` in config.json still apply).
 * `MAX_QUEUE` alone means nothing, so it needs `MAX_CONCURRENT`.
 */
export interface IsolateLimits {
  maxConcurrent: number
  maxQueue: number
}

const limitsSchema = z
  .object({ MAX_CONCURRENT: positiveInt.optional(), MAX_QUEUE: z.coerce.number().int().min(0).optional() })
  .refine((v) => v.MAX_QUEUE === undefined || v.MAX_CONCURRENT !== undefined, {
    message: 'MAX_QUEUE needs MAX_CONCURRENT',
    path: ['MAX_QUEUE'],
  })

/** Reads `MAX_CONCURRENT` and `MAX_QUEUE` from the vars, once per env object; malformed values throw (a 500), as readConfig. */
export function isolateLimits(env: object): IsolateLimits {
  const memo = parsedOf(env)
  let limits = memo.limits
  if (!limits) {
    const vars = env as Record<string, unknown>
    const given = (key: string) => (vars[key] === undefined || vars[key] === '' ? undefined : vars[key])
    const result = limitsSchema.safeParse({ MAX_CONCURRENT: given('MAX_CONCURRENT'), MAX_QUEUE: given('MAX_QUEUE') })
    if (!result.success) throw new Error(`invalid configuration in vars: ${z.prettifyError(result.error)}`)
    limits = memo.limits = {
      maxConcurrent: result.data.MAX_CONCURRENT ?? Infinity,
      maxQueue: result.data.MAX_QUEUE ?? Infinity,
    }
  }
  return limits
}

/** Which models the R2 bucket may serve: `'*'` for every one, else a set of names (empty: R2 is off). */
export function r2Models(env: object): '*' | Set<string> {
  const value = (env as StringVars).R2_MODELS
  // Once per env object and value: every request asks, and the pointer's merged repository is kept
  // only while this is the same object (repository/follow.ts), so a fresh Set would rebuild it each time.
  const memo = parsedOf(env)
  if (memo.r2 && memo.r2.value === value) return memo.r2.allowed
  const allowed: '*' | Set<string> =
    value === undefined || value.trim() === '*'
      ? '*'
      : new Set(
          value
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        )
  memo.r2 = { value, allowed }
  return allowed
}

/**
 * Reads the configuration from the Worker's `vars`, once per env object.
 * A malformed value is a deployment mistake, so it throws (a 500) instead of guessing.
 */
export function readConfig(env: object): Config {
  const memo = parsedOf(env)
  let config = memo.config
  if (!config) {
    const vars = Object.fromEntries(
      Object.keys(DEFAULTS).flatMap((key) => {
        const value = (env as Record<string, unknown>)[key]
        return value === undefined || value === '' ? [] : [[key, value]]
      }),
    )
    const result = schema.safeParse(vars)
    if (!result.success) {
      throw new Error(`invalid configuration in vars: ${z.prettifyError(result.error)}`)
    }
    config = memo.config = result.data
  }
  return config
}
