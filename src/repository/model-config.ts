/**
 * @module repository/model-config — the schema of a model's optional `config.json`, and its check.
 *
 * No relative imports and only erasable TypeScript: scripts/build/build-index.mjs imports this file
 * directly (Node strips the types), so a bundled config.json is refused at build time by the
 * same code that checks it in the Worker (where an R2 config.json is only seen at run time).
 */
import { z } from 'zod'

// Label names as TF Serving allows them, so they are safe in a URL path.
const LABEL = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/

/** Longest a batch may wait for company: past a second, a queue is a latency bug, not a batch. */
export const MAX_QUEUE_DELAY_MS = 1000

/** Longest a cached prediction may live: a year, as `Cache-Control: max-age` is commonly capped. */
export const MAX_RESPONSE_CACHE_TTL_SECONDS = 31_536_000

// ===== Image inputs, labels, classify (protocols/images/) =====

/** Largest side an image input may be resized to: larger than any image model's input, small enough to bound the work. */
export const MAX_IMAGE_SIDE = 4096

/**
 * How an encoded image becomes one row of an input: decoded, alpha dropped, cropped (`center-crop`)
 * or not, resized bilinearly to `size` ([height, width]) as `tf.image.resizeBilinear` does, each
 * 0–255 value mapped linearly onto `range`, then `(v - mean) / std` per channel when given.
 */
export const ImageTransform = z
  .strictObject({
    size: z.tuple([z.int().min(1).max(MAX_IMAGE_SIDE), z.int().min(1).max(MAX_IMAGE_SIDE)]),
    channels: z.union([z.literal(1), z.literal(3)]),
    range: z
      .tuple([z.number(), z.number()])
      .refine(([low, high]) => low !== high, 'range must map 0 and 255 onto two different values'),
    mean: z.array(z.number()).optional(),
    std: z.array(z.number().refine((v) => v !== 0, 'std must not be 0')).optional(),
    fit: z.enum(['stretch', 'center-crop']).default('stretch'),
    /** Where the channels go: `nhwc` (`[n, h, w, c]`, TensorFlow's) or `nchw` (`[n, c, h, w]`, as PyTorch exports have it). */
    layout: z.enum(['nhwc', 'nchw']).default('nhwc'),
  })
  .superRefine((image, ctx) => {
    for (const key of ['mean', 'std'] as const) {
      const values = image[key]
      if (values && values.length !== image.channels) {
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: `${key} has ${values.length} values; channels is ${image.channels}`,
        })
      }
    }
  })
export type ImageTransform = z.infer<typeof ImageTransform>

// ===== Text inputs and embeddings (protocols/text/) =====

/** Most tokens a text input may take: past BERT's 512 and most encoders' 8192, a text is a document, not a request. */
export const MAX_TEXT_TOKENS = 8192

/**
 * How texts become one input of token ids: encoded by the Hugging Face `tokenizer` file in the
 * version's folder (beside model.json), cut and padded to `max_length` tokens (or, with
 * `padding: "longest"`, to the longest text of the request), and `field` of the encoding fed.
 */
export const TextTransform = z.strictObject({
  tokenizer: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*\.json$/, 'a tokenizer is a .json file name beside model.json, without a path'),
  max_length: z.int().min(1).max(MAX_TEXT_TOKENS),
  field: z.enum(['ids', 'attention_mask', 'token_type_ids']),
  padding: z.enum(['max_length', 'longest']).default('max_length'),
})
export type TextTransform = z.infer<typeof TextTransform>

/** One input's transform: exactly one of `image` (encoded images) or `text` (strings through a tokenizer). */
export const InputTransformConfig = z
  .strictObject({ image: ImageTransform.optional(), text: TextTransform.optional() })
  .refine((t) => (t.image === undefined) !== (t.text === undefined), 'an input takes exactly one of "image" or "text"')
export type InputTransformConfig = z.infer<typeof InputTransformConfig>

/**
 * `:embed`: which output holds the vectors (may be left out when the model has one output), how a
 * `[n, tokens, d]` output is pooled into one vector per text (`mean` over the attention mask, the
 * first token's with `cls`; `none` for an output already `[n, d]`), and whether vectors are scaled
 * to length 1.
 */
export const EmbedConfig = z.strictObject({
  output: z.string().min(1).optional(),
  pooling: z.enum(['mean', 'cls', 'none']).default('mean'),
  normalize: z.boolean().default(true),
})
export type EmbedConfig = z.infer<typeof EmbedConfig>

/** Class names in the order of the classify output's last dimension, or a text file beside config.json, one per line. */
export const Labels = z.union([
  z.array(z.string()).min(1),
  z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'a labels file is a file name beside config.json, without a path'),
])

/** A labels file's names: one per line, trailing empty lines and `\r` ignored. */
export function labelLines(text: string): string[] {
  const lines = text.split('\n').map((line) => line.replace(/\r$/, ''))
  while (lines.length > 0 && lines.at(-1) === '') lines.pop()
  return lines
}

/** Which output `:classify` ranks, how many labels it answers, and what turns the output into scores. */
export const ClassifyConfig = z.strictObject({
  /** The output holding the class scores; may be left out when the model has one output. */
  output: z.string().min(1).optional(),
  top_k: z.int().min(1).default(5),
  activation: z.enum(['none', 'softmax', 'sigmoid']).default('none'),
})
export type ClassifyConfig = z.infer<typeof ClassifyConfig>

/** The most detections one image may answer: more than any detector keeps (DETR 100, YOLO's default 300). */
export const MAX_DETECTIONS = 1000

/** What the values of one row of a detector's output are (docs/detection.md). */
export const DETECT_COLUMNS = ['box,score,class', 'box,classes', 'box,objectness,classes'] as const

/**
 * How `:detect` reads a detector's outputs into `[{label, score, box}]`: one output of rows
 * (`output` and `columns`), or separate tensors (`outputs`, as TensorFlow Object Detection API
 * exports have them); then the boxes' format and units, and the thresholds of non-max suppression.
 */
export const DetectConfig = z
  .strictObject({
    /** One output `[1, N, K]` or `[1, K, N]`, each row `columns`. */
    output: z.string().min(1).optional(),
    columns: z.enum(DETECT_COLUMNS).optional(),
    /** Separate outputs: boxes `[1, N, 4]`, scores `[1, N]` (or `[1, N, C]`), classes `[1, N]`, count `[1]`. */
    outputs: z
      .strictObject({
        boxes: z.string().min(1),
        scores: z.string().min(1),
        classes: z.string().min(1).optional(),
        count: z.string().min(1).optional(),
      })
      .optional(),
    box_format: z.enum(['xyxy', 'yxyx', 'cxcywh']).default('xyxy'),
    /** `pixels` of the model's input, or `normalized` (0–1 of its width and height). */
    box_units: z.enum(['pixels', 'normalized']).default('pixels'),
    /** Subtracted from each class index before it names a label; a class below 0 then is background and dropped. */
    class_offset: z.int().min(0).default(0),
    score_threshold: z.number().min(0).max(1).default(0.3),
    iou_threshold: z.number().min(0).max(1).default(0.5),
    max_detections: z.int().min(1).max(MAX_DETECTIONS).default(20),
    /** NMS across classes: a box suppresses overlapping boxes of any label, not only of its own. */
    class_agnostic: z.boolean().default(false),
  })
  .superRefine((detect, ctx) => {
    const rows = detect.output !== undefined || detect.columns !== undefined
    if (rows && detect.outputs)
      ctx.addIssue({ code: 'custom', message: 'give output and columns, or outputs, not both' })
    else if (!rows && !detect.outputs)
      ctx.addIssue({
        code: 'custom',
        message:
          'name the detections: output and columns (one tensor of rows), or outputs {boxes, scores, classes, count}',
      })
    else if (rows && detect.output === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['output'],
        message: 'columns needs output: the tensor whose rows they describe',
      })
    else if (rows && detect.columns === undefined)
      ctx.addIssue({ code: 'custom', path: ['columns'], message: `output needs columns: ${DETECT_COLUMNS.join(', ')}` })
  })
export type DetectConfig = z.infer<typeof DetectConfig>

// ===== Traffic control (src/traffic/traffic.ts) =====

// A version number as a path segment has it: a positive integer.
const VERSION_NUMBER = /^[1-9][0-9]{0,15}$/

/**
 * Weights by version number or label (`{"1": 90, "2": 10}`, `{"stable": 9, "canary": 1}`), over
 * their sum; with `sticky_header`, a hash of that header's value picks, so one client stays on one
 * version while the weights stay the same. Without the header, each request is drawn at random.
 */
export const TrafficConfig = z.strictObject({
  versions: z
    .record(
      z.string().refine((key) => VERSION_NUMBER.test(key) || LABEL.test(key), 'a key is a version number or a label'),
      z.number().min(0).refine(Number.isFinite, 'a weight is a finite number'),
    )
    .refine((weights) => Object.values(weights).some((w) => w > 0), 'at least one weight must be above 0'),
  sticky_header: z
    .string()
    .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, 'a header name (letters, digits, -)')
    .optional(),
  /**
   * Which versions a request may name (`/versions/{v}`, `/labels/{l}`, RPC `version`/`label`):
   * `listed` (the default) only those `versions` lists, weight 0 included; `any` every version
   * served. So a version published beside a split serves nobody until the split lists it.
   */
  explicit: z.enum(['any', 'listed']).optional(),
})
export type TrafficConfig = z.infer<typeof TrafficConfig>

/** `fraction` of requests (0–1) also run on `version` (a number or a label) after their response; outputs compared. */
export const ShadowConfig = z.strictObject({
  version: z.union([z.int().positive(), z.string().regex(LABEL, 'a label is a letter then letters, digits, _ or -')]),
  fraction: z.number().min(0).max(1),
})
export type ShadowConfig = z.infer<typeof ShadowConfig>

/**
 * A model's optional `config.json`, beside its version folders. Every field is optional.
 * Unknown fields are refused, so a typo cannot silently switch a limit off.
 */
export const ModelConfig = z
  .strictObject({
    /** A human description, shown in the model's metadata. */
    description: z.string().optional(),
    /** Rows per request for this model; the Worker's MAX_BATCH_SIZE still applies if lower. */
    max_batch_size: z.int().positive().optional(),
    /** Outputs returned when a request names none. */
    default_outputs: z.array(z.string()).min(1).optional(),
    /** Allowed value range per input name. */
    input_limits: z
      .record(z.string(), z.strictObject({ min: z.number().optional(), max: z.number().optional() }))
      .optional(),
    /**
     * Which versions are served, as TF Serving's model_version_policy: `{"latest": {}}` (the default)
     * serves every version and the highest when a request names none; `{"specific": {"versions": [n, …]}}`
     * serves only those, the highest of them by default — one listed version pins the model.
     */
    version_policy: z
      .union([
        z.strictObject({ latest: z.strictObject({}) }),
        z.strictObject({ specific: z.strictObject({ versions: z.array(z.int().positive()).min(1) }) }),
      ])
      .optional(),
    /** Names for versions, as TF Serving's version_labels: `{"stable": 1, "canary": 2}`, served at `/labels/{l}`. */
    version_labels: z
      .record(z.string().regex(LABEL, 'a label is a letter then letters, digits, _ or -'), z.int().positive())
      .optional(),
    /**
     * Adaptive batching, off when absent (see runtime/batcher.ts and docs/batching.md): concurrent
     * requests are merged into one run of at most `max_batch_size` rows, the first waiting at most
     * `max_queue_delay_ms` for company. TF Serving calls these max_batch_size and batch_timeout_micros,
     * Triton max_batch_size and max_queue_delay_microseconds; milliseconds here, as Workers' timers count.
     * Not the same as the top-level `max_batch_size`, which limits the rows of one request.
     */
    batching: z
      .strictObject({
        max_batch_size: z.int().min(1),
        max_queue_delay_ms: z.number().min(0).max(MAX_QUEUE_DELAY_MS),
      })
      .optional(),
    /** Per-input transforms, by input name: what a client's bytes become before the model sees them. */
    inputs: z.record(z.string(), InputTransformConfig).optional(),
    /** Class names for `:classify`, in the order of the output's last dimension. */
    labels: Labels.optional(),
    /** Which output `:classify` ranks, how many labels it answers, and the activation first. */
    classify: ClassifyConfig.optional(),
    /** What `:embed` answers: the output holding the vectors, its pooling and normalization. */
    embed: EmbedConfig.optional(),
    /** How `:detect` reads the model's outputs as labelled boxes (docs/detection.md); needs `labels`. */
    detect: DetectConfig.optional(),
    /**
     * The prediction cache, off when absent (src/cache/prediction-cache.ts): answers are kept on the Workers
     * Cache API for `ttl_seconds`, keyed by the model, the answering version, the parsed inputs, the
     * outputs asked for and the response format.
     */
    response_cache: z.strictObject({ ttl_seconds: z.int().min(1).max(MAX_RESPONSE_CACHE_TTL_SECONDS) }).optional(),
    /** How requests that name no version or label are split between versions (src/traffic/traffic.ts). */
    traffic: TrafficConfig.optional(),
    /** A version that also runs a fraction of requests after their response, compared and never answered (src/traffic/traffic.ts). */
    shadow: ShadowConfig.optional(),
    /** Requests of this model in flight at once, from routing until the response is ready (body read included). */
    max_concurrent: z.int().positive().optional(),
    /** Requests that may wait for one of the `max_concurrent` slots, first come first served; beyond, 429. Unbounded when absent. */
    max_queue: z.int().min(0).optional(),
  })
  .superRefine((config, ctx) => {
    // A label used by traffic or shadow must be one the model defines, else the split could never resolve it.
    const labels = config.version_labels ?? {}
    const undefinedLabel = (key: string) => !VERSION_NUMBER.test(key) && !Object.hasOwn(labels, key)
    for (const key of Object.keys(config.traffic?.versions ?? {})) {
      if (undefinedLabel(key))
        ctx.addIssue({
          code: 'custom',
          path: ['traffic', 'versions', key],
          message: `'${key}' is neither a version number nor one of version_labels`,
        })
    }
    const shadow = config.shadow?.version
    if (typeof shadow === 'string' && undefinedLabel(shadow)) {
      ctx.addIssue({ code: 'custom', path: ['shadow', 'version'], message: `'${shadow}' is not one of version_labels` })
    }
    // Inputs fed from one tokenizer share one encoding per request, so they must agree on its length.
    const encodings = new Map<string, { input: string; max_length: number; padding: string }>()
    for (const [input, transform] of Object.entries(config.inputs ?? {})) {
      const text = transform.text
      if (!text) continue
      const first = encodings.get(text.tokenizer)
      if (!first) encodings.set(text.tokenizer, { input, max_length: text.max_length, padding: text.padding })
      else if (first.max_length !== text.max_length || first.padding !== text.padding) {
        const message = `inputs fed from ${text.tokenizer} share one encoding: max_length and padding must equal input '${first.input}''s (${first.max_length}, ${first.padding})`
        ctx.addIssue({ code: 'custom', path: ['inputs', input, 'text'], message })
      }
    }
    if (config.detect && config.labels === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['detect'],
        message: 'detect needs labels: the class names, in the order of the class indices',
      })
    }
    if (config.max_queue !== undefined && config.max_concurrent === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['max_queue'],
        message: 'max_queue bounds the requests waiting for max_concurrent, which is not set',
      })
    }
  })
export type ModelConfig = z.infer<typeof ModelConfig>

/** The keys an object in the schema allows at `path`, for "did you mean" hints; empty where there is no object. */
function keysAt(schema: z.core.$ZodType, path: readonly PropertyKey[]): string[] {
  const def = schema._zod.def as { type: string; [k: string]: any }
  switch (def.type) {
    case 'optional':
      return keysAt(def.innerType, path)
    case 'union':
      return [...new Set((def.options as z.core.$ZodType[]).flatMap((option) => keysAt(option, path)))]
    case 'array':
      return path.length === 0 ? [] : keysAt(def.element, path.slice(1))
    case 'record':
      return path.length === 0 ? [] : keysAt(def.valueType, path.slice(1))
    case 'object': {
      if (path.length === 0) return Object.keys(def.shape)
      const field = Object.hasOwn(def.shape, path[0]!) ? def.shape[path[0]!] : undefined
      return field ? keysAt(field, path.slice(1)) : []
    }
    default:
      return []
  }
}

/** Edit distance (insertions, deletions, substitutions) between two short strings. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    row = next
  }
  return row[b.length]!
}

/** The known key a misspelt one most likely meant: a close edit, or one that starts with the other. */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase()
  let best: { name: string; score: number } | undefined
  for (const name of known) {
    const d = distance(lower, name)
    const prefix = name.startsWith(lower) || lower.startsWith(name)
    if (d > Math.max(2, Math.floor(name.length / 3)) && !prefix) continue
    const score = prefix ? Math.min(d, 1) : d
    if (!best || score < best.score) best = { name, score }
  }
  return best?.name
}

/**
 * Checks a parsed config.json against `ModelConfig`. On failure, `message` names every problem on
 * one line, each with where it is, and an unknown key with the key it probably meant.
 */
export function checkModelConfig(raw: unknown): { ok: true; config: ModelConfig } | { ok: false; message: string } {
  const result = ModelConfig.safeParse(raw)
  if (result.success) return { ok: true, config: result.data }
  const problems = result.error.issues.map((issue) => {
    const at = issue.path.length > 0 ? ` at ${issue.path.join('.')}` : ''
    if (issue.code !== 'unrecognized_keys') return `${issue.message}${at}`
    const known = keysAt(ModelConfig, issue.path)
    return issue.keys
      .map((key) => {
        const meant = closestKey(key, known)
        return `unknown key "${key}"${at}${meant ? ` (did you mean "${meant}"?)` : ''}`
      })
      .join('; ')
  })
  return { ok: false, message: problems.join('; ') }
}
