/**
 * @module rpc/types — the types a calling Worker imports to call warmserve through a service binding
 * (`[[services]] binding = "MODELS" service = "warmserve" entrypoint = "Models"`). Types only: no code
 * of warmserve runs in the caller.
 *
 * ```ts
 * import type { ModelsService } from 'warmserve/src/rpc/types'
 * interface Env { MODELS: ModelsService }
 * const ranked = await env.MODELS.run('digits', { image: pngBytes })
 * ```
 */

/** Which version answers, whether the prediction cache may, and how many labels a classification ranks. */
export interface RunOptions {
  /** A version number; by default the model's default version answers. */
  version?: number
  /** A version label from the model's config.json (`version_labels`); not with `version`. */
  label?: string
  /** Labels a classification answers; by default `classify.top_k` in config.json, else 5. */
  top_k?: number
  /** A detector's thresholds for this call (its config.json `detect` block's otherwise): scores kept above it, 0–1. */
  score_threshold?: number
  /** Overlap (IoU, 0–1) from which non-max suppression drops the lower-scored of two boxes. */
  iou_threshold?: number
  /** Detections answered at most, 1–1000. */
  max_detections?: number
  /** `false` skips the lookup in the prediction cache (as `Cache-Control: no-cache` does over HTTP); the answer still refreshes it. */
  cache?: boolean
  /**
   * Who is asking, for the model's traffic split (`traffic.sticky_header` in its config.json): one
   * client id always gets one version while the weights stay the same, as that header does over HTTP.
   */
  client_id?: string
}

/** TF Serving's predict body: the row format or the columnar one. */
export type PredictInputs =
  { instances: unknown[]; signature_name?: string } | { inputs: unknown; signature_name?: string }

/** An encoded image (JPEG, PNG, WebP) for an image model: its bytes. */
export interface ImageInputs {
  image: Uint8Array | ArrayBuffer | number[]
}

/** Texts for a text model (its inputs fed from a tokenizer): one string, or up to MAX_TEXTS. */
export interface TextInputs {
  text: string | string[]
}

/** A text model's answer: a classification per text (one list for one string), or embeddings when the model's config.json has `embed`. */
export type TextResult = ClassifyResult | ClassifyResult[] | EmbeddingsResult

/** One vector per text, in Workers AI's text-embeddings shape. */
export interface EmbeddingsResult {
  shape: [number, number]
  data: number[][]
  pooling: 'mean' | 'cls' | 'none'
}

/** TF Serving's predict answer. */
export type PredictResponse = { predictions: unknown } | { outputs: unknown }

/** A classification, best first, in Workers AI's shape. */
export type ClassifyResult = Array<{ label: string; score: number }>

/** A detection, best first, in Workers AI's shape: the box in pixels of the image as sent. */
export type DetectResult = Array<{
  label: string
  score: number
  box: { xmin: number; ymin: number; xmax: number; ymax: number }
}>

/** Typed arrays an inference input may carry in `data`, matching its datatype (FP32: Float32Array, INT64: BigInt64Array, BOOL: Uint8Array…). */
export type TypedData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array

/** An Open Inference Protocol inference request; `data` may be a typed array, and BYTES elements byte arrays. */
export interface InferRequest {
  id?: string
  inputs: Array<{
    name: string
    shape: number[]
    datatype:
      | 'BOOL'
      | 'UINT8'
      | 'UINT16'
      | 'UINT32'
      | 'UINT64'
      | 'INT8'
      | 'INT16'
      | 'INT32'
      | 'INT64'
      | 'FP16'
      | 'FP32'
      | 'FP64'
      | 'BYTES'
    data: unknown[] | TypedData | Array<Uint8Array | ArrayBuffer>
  }>
  outputs?: Array<{ name: string }>
}

/** An inference answer, each output's data a typed array (BOOL as 0/1 bytes). */
export interface InferResponse {
  model_name: string
  model_version: string
  id?: string
  outputs: Array<{ name: string; datatype: string; shape: number[]; data: Float32Array | Int32Array | Uint8Array }>
}

/** A model's metadata, as `GET /v2/models/{m}` answers it. */
export interface ModelMetadata {
  name: string
  versions: string[]
  platform: string
  inputs: Array<{ name: string; datatype: string; shape: number[]; parameters?: Record<string, unknown> }>
  outputs: Array<{ name: string; datatype: string; shape: number[] }>
  parameters?: Record<string, unknown>
}

/** One served version of a model and its state in the answering isolate, as `POST /v2/repository/index` lists it. */
export interface RepositoryEntry {
  name: string
  version: string
  state: 'READY' | 'LOADING' | 'UNAVAILABLE'
  reason?: string
}

/**
 * The `Models` entrypoint. A bad call rejects with an `Error` whose message is the HTTP API's for
 * the same mistake, and whose `status` is its HTTP status (where the runtime carries it across).
 */
export interface ModelsService {
  /**
   * TF Serving's predict body → its answer; `{image}` on an image model → `[{label, score}]`, on a
   * detector (`detect` in its config.json) → `[{label, score, box}]`; `{text}` on a text model →
   * `[{label, score}]` per text, or `{shape, data, pooling}` with `embed`.
   */
  run(model: string, inputs: PredictInputs, options?: RunOptions): Promise<PredictResponse>
  run(model: string, inputs: ImageInputs, options?: RunOptions): Promise<ClassifyResult | DetectResult>
  run(model: string, inputs: TextInputs, options?: RunOptions): Promise<TextResult>
  /** An Open Inference Protocol request → its answer, with typed arrays. */
  infer(
    model: string,
    request: InferRequest,
    options?: Pick<RunOptions, 'version' | 'cache' | 'client_id'>,
  ): Promise<InferResponse>
  metadata(model: string, options?: Pick<RunOptions, 'version'>): Promise<ModelMetadata>
  list(): Promise<RepositoryEntry[]>
}
