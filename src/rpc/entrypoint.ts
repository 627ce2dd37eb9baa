/**
 * @module rpc/entrypoint — `Models`, the service-binding entrypoint: other Workers call warmserve directly
 * (`env.MODELS.run(…)`, as they call `env.AI.run`), with no HTTP or JSON in between.
 *
 * Each method parses its arguments as the HTTP routes parse a body, then calls the same protocol
 * cores they do (the protocols' dataplane.ts files, src/predict.ts for predictions), in the same isolate state: one model cache,
 * one prediction cache, the same leases, limits and metrics. A mistake rejects with an `Error`
 * carrying the HTTP answer's message and its `status`. Types for callers: src/rpc/types.ts.
 * @see https://developers.cloudflare.com/workers/runtime-apis/rpc/
 */
import { WorkerEntrypoint } from 'cloudflare:workers'
import { datasetOf, PointWriter, RequestRecord } from '../analytics/analytics'
import { readConfig } from '../core/config'
import { ApiError, badRequest, describeValue, isObject } from '../core/errors'
import { isolate } from '../isolate'
import { log } from '../core/log'
import type { Caller, Prediction } from '../predict'
import { InferRequest, parseBody, PredictRequest } from '../protocols/schemas'
import { parseLabel } from '../protocols/selector'
import { runText } from '../protocols/text/tasks'
import { askedDetectOptions } from '../protocols/images/detect'
import { classifyImage } from '../protocols/tf-serving/classify'
import { detectImages } from '../protocols/tf-serving/detect'
import { predictInput, predictTFServing } from '../protocols/tf-serving/dataplane'
import { inferV2, modelMetadataV2, repositoryEntries } from '../protocols/v2/dataplane'
import type { Selector } from '../repository/repository'
import type {
  ClassifyResult,
  DetectResult,
  ImageInputs,
  InferRequest as InferRequestArg,
  InferResponse,
  ModelsService,
  PredictInputs,
  RunOptions,
  TextInputs,
  TextResult,
} from './types'

/** The typed array each datatype's `data` may arrive as, element for element its binary layout. */
const TYPED_DATA: Record<string, string> = {
  BOOL: 'Uint8Array',
  UINT8: 'Uint8Array',
  INT8: 'Int8Array',
  UINT16: 'Uint16Array',
  INT16: 'Int16Array',
  FP16: 'Uint16Array',
  UINT32: 'Uint32Array',
  INT32: 'Int32Array',
  FP32: 'Float32Array',
  FP64: 'Float64Array',
  UINT64: 'BigUint64Array',
  INT64: 'BigInt64Array',
}

function checkModel(model: unknown): asserts model is string {
  if (typeof model !== 'string' || model === '')
    throw badRequest(`model must be a model's name, got ${describeValue(model)}`)
}

/** `options.version` / `options.label` as the routes' path segments would give them. */
function selectorOf(options: unknown): Selector {
  if (options === undefined) return {}
  if (!isObject(options)) throw badRequest(`options must be an object, got ${describeValue(options)}`)
  const { version, label } = options
  if (version !== undefined && label !== undefined) throw badRequest('options: give version or label, not both')
  if (version !== undefined) {
    if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1)
      throw badRequest(`version ${describeValue(version)} is not a positive integer`)
    return { version }
  }
  if (label !== undefined) {
    if (typeof label !== 'string') throw badRequest(`label must be a string, got ${describeValue(label)}`)
    return { label: parseLabel(label) }
  }
  return {}
}

function topKOf(options: RunOptions | undefined): number | undefined {
  const k = options?.top_k
  if (k === undefined) return undefined
  if (typeof k !== 'number' || !Number.isSafeInteger(k) || k < 1)
    throw badRequest(`top_k ${describeValue(k)} is not a positive integer`)
  return k
}

/** An image's bytes, from a Uint8Array, an ArrayBuffer or a list of byte values, within MAX_IMAGE_BYTES. */
function imageBytes(image: unknown, maxBytes: number): Uint8Array {
  const size =
    image instanceof ArrayBuffer || ArrayBuffer.isView(image)
      ? image.byteLength
      : Array.isArray(image)
        ? image.length
        : undefined
  if (size === undefined || (ArrayBuffer.isView(image) && !(image instanceof Uint8Array))) {
    throw badRequest(
      `image must be a Uint8Array, an ArrayBuffer or a list of byte values, got ${ArrayBuffer.isView(image) ? `a ${image.constructor.name}` : describeValue(image)}`,
    )
  }
  if (size > maxBytes)
    throw new ApiError(413, `the image is ${size} bytes, more than the limit of ${maxBytes} (MAX_IMAGE_BYTES)`)
  if (image instanceof Uint8Array) return image
  if (image instanceof ArrayBuffer) return new Uint8Array(image)
  const values = image as unknown[]
  const bad = values.findIndex((v) => typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 255)
  if (bad !== -1)
    throw badRequest(`image[${bad}]: expected a byte (an integer 0–255), got ${describeValue(values[bad])}`)
  return Uint8Array.from(values as number[])
}

/**
 * An inference request with typed arrays turned into what the HTTP binary extension gives: the JSON
 * part, and each input's raw bytes (a typed array's bytes, or BYTES elements length-prefixed).
 */
function typedToBinary(request: unknown): { body: unknown; raws: (Uint8Array | undefined)[] } {
  if (!isObject(request) || !Array.isArray(request.inputs)) return { body: request, raws: [] }
  const raws: (Uint8Array | undefined)[] = []
  const inputs = request.inputs.map((input: unknown, i) => {
    if (!isObject(input)) return input
    const { data } = input
    const where = `input '${typeof input.name === 'string' ? input.name : i}'`
    if (ArrayBuffer.isView(data) && !(data instanceof DataView)) {
      const expected = TYPED_DATA[String(input.datatype)]
      if (expected !== data.constructor.name) {
        throw badRequest(
          `${where}: data is a ${data.constructor.name}, but datatype ${String(input.datatype)} ${expected ? `takes a ${expected}` : 'takes no typed array'}`,
        )
      }
      raws[i] = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      return { ...input, data: undefined }
    }
    if (
      input.datatype === 'BYTES' &&
      Array.isArray(data) &&
      data.length > 0 &&
      data.every((e) => e instanceof Uint8Array || e instanceof ArrayBuffer)
    ) {
      // Triton's BYTES layout: each element after its 4-byte little-endian length.
      const elements = (data as (Uint8Array | ArrayBuffer)[]).map((e) =>
        e instanceof Uint8Array ? e : new Uint8Array(e),
      )
      const raw = new Uint8Array(elements.reduce((n, e) => n + 4 + e.byteLength, 0))
      const view = new DataView(raw.buffer)
      let offset = 0
      for (const element of elements) {
        view.setUint32(offset, element.byteLength, true)
        raw.set(element, offset + 4)
        offset += 4 + element.byteLength
      }
      raws[i] = raw
      return { ...input, data: undefined }
    }
    return input
  })
  return { body: { ...request, inputs }, raws: inputs.map((_, i) => raws[i]) }
}

/** What the caller gets for a failure: the HTTP answer's message, and its status. */
function rejection(error: unknown, method: string, model: unknown): Error & { status: number } {
  if (error instanceof ApiError) {
    const rejected = new Error(error.message) as Error & { status: number; retryAfter?: number }
    rejected.status = error.status
    if (error.headers['Retry-After']) rejected.retryAfter = Number(error.headers['Retry-After'])
    return rejected
  }
  // Anything else is a fault of ours: logged whole, the caller told only that it happened.
  const id = crypto.randomUUID()
  log('error', 'rpc.crashed', {
    requestId: id,
    method,
    model,
    error: (error as Error)?.message,
    stack: (error as Error)?.stack,
  })
  return Object.assign(new Error(`internal error (request ${id})`), { status: 500 })
}

/**
 * Runs one call as the HTTP middleware would a request: counted in `/metrics`, logged, and any
 * failure turned into the rejection the caller sees. A function of the module, not a method: every
 * method of an entrypoint, private in TypeScript or not, can be called over RPC.
 */
async function serve<T>(
  entry: { env: Env; ctx: ExecutionContext },
  method: string,
  model: unknown,
  options: unknown,
  work: (caller: Caller) => Promise<Prediction<T> | { value: T }>,
): Promise<T> {
  const started = Date.now()
  const state = isolate()
  // The Analytics Engine point of an inference call (src/analytics/analytics.ts), when the dataset is bound.
  const dataset = datasetOf(entry.env)
  const writer = dataset && new PointWriter(dataset)
  const record =
    writer && (method === 'run' || method === 'infer')
      ? new RequestRecord(writer, state.analytics, {
          route: `rpc:${method}`,
          model: typeof model === 'string' ? model : '',
        })
      : undefined
  // options.client_id stands for the model's sticky header: the one header traffic control asks for.
  const clientId = isObject(options) ? options.client_id : undefined
  const caller: Caller = {
    env: entry.env,
    waitUntil: (promise) => entry.ctx.waitUntil(promise),
    noCache: isObject(options) && options.cache === false,
    header: () => (typeof clientId === 'string' ? clientId : undefined),
    record,
  }
  try {
    if (clientId !== undefined && typeof clientId !== 'string')
      throw badRequest(`client_id must be a string, got ${describeValue(clientId)}`)
    const result = await work(caller)
    const { held, inferMs, cache } =
      'held' in result ? result : { held: undefined, inferMs: undefined, cache: undefined }
    const version = held ? String(held.target.version) : undefined
    state.metrics.recordRequest(held?.target.name, version, 200, inferMs)
    log('info', 'rpc', {
      method,
      model,
      status: 200,
      ms: Date.now() - started,
      version,
      cache: held?.lease.outcome,
      predictionCache: cache,
    })
    record?.finish(200, undefined, {
      total_ms: Date.now() - started,
      decode_ms: (result as { decodeMs?: number }).decodeMs ?? 0,
    })
    return result.value
  } catch (error) {
    const rejected = rejection(error, method, model)
    state.metrics.recordRequest(typeof model === 'string' ? model : undefined, undefined, rejected.status)
    log(rejected.status >= 500 ? 'error' : 'info', 'rpc', {
      method,
      model,
      status: rejected.status,
      ms: Date.now() - started,
      error: rejected.message,
    })
    record?.finish(rejected.status, error, { total_ms: Date.now() - started })
    throw rejected
  } finally {
    if (writer) state.analytics.drainInto(writer)
  }
}

/** The service-binding entrypoint: `[[services]] binding = "MODELS" service = "warmserve" entrypoint = "Models"`. */
export class Models extends WorkerEntrypoint<Env> implements ModelsService {
  /**
   * TF Serving's predict body → its answer; `{image}` on an image model → `[{label, score}]`, on a
   * detector `[{label, score, box}]`; `{text}` on a text model → `[{label, score}]` per text, or
   * `{shape, data, pooling}` with `embed`.
   */
  run(
    model: string,
    inputs: PredictInputs,
    options?: RunOptions,
  ): Promise<{ predictions: unknown } | { outputs: unknown }>
  run(model: string, inputs: ImageInputs, options?: RunOptions): Promise<ClassifyResult | DetectResult>
  run(model: string, inputs: TextInputs, options?: RunOptions): Promise<TextResult>
  run(model: string, inputs: PredictInputs | ImageInputs | TextInputs, options?: RunOptions): Promise<unknown> {
    return serve<unknown>(
      { env: this.env, ctx: this.ctx },
      'run',
      model,
      options,
      async (caller): Promise<Prediction<unknown>> => {
        checkModel(model)
        const selector = selectorOf(options)
        if (isObject(inputs) && 'image' in inputs) {
          const bytes = imageBytes(inputs.image, readConfig(caller.env).MAX_IMAGE_BYTES)
          // A detector (a `detect` block in its config.json) answers boxes; any other image model, labels.
          const repository = await isolate().repository(caller.env, caller.waitUntil)
          if (repository.config(model).detect) {
            const asked = askedDetectOptions((key) => (isObject(options) ? options[key] : undefined), 'options.')
            const found = await detectImages(
              caller,
              model,
              selector,
              async () => ({ bytes: [bytes], where: () => 'image' }),
              asked,
              'an image',
            )
            return { ...found, value: found.value[0]! }
          }
          return classifyImage(caller, model, selector, async () => bytes, topKOf(options), 'image')
        }
        if (isObject(inputs) && 'text' in inputs) return runText(caller, model, selector, inputs.text, topKOf(options))
        const input = predictInput(inputs, (value) => parseBody(PredictRequest, value))
        return predictTFServing(caller, model, selector, async () => input)
      },
    )
  }

  /** An Open Inference Protocol request → its answer, each output's data a typed array. */
  infer(
    model: string,
    request: InferRequestArg,
    options?: Pick<RunOptions, 'version' | 'cache' | 'client_id'>,
  ): Promise<InferResponse> {
    return serve({ env: this.env, ctx: this.ctx }, 'infer', model, options, async (caller) => {
      checkModel(model)
      const { version } = selectorOf(options === undefined ? undefined : { version: (options as RunOptions).version })
      const { body, raws } = typedToBinary(request)
      const parsed = parseBody(InferRequest, body)
      const prediction = await inferV2(caller, model, version, async () => ({ body: parsed, raws }))
      return { ...prediction, value: { ...prediction.value, ...(parsed.id !== undefined ? { id: parsed.id } : {}) } }
    })
  }

  /** The model's metadata, as `GET /v2/models/{m}` answers it. */
  metadata(model: string, options?: Pick<RunOptions, 'version'>) {
    return serve({ env: this.env, ctx: this.ctx }, 'metadata', model, undefined, async (caller) => {
      checkModel(model)
      const { version } = selectorOf(options === undefined ? undefined : { version: (options as RunOptions).version })
      return { value: await modelMetadataV2(caller, model, version) }
    })
  }

  /** Every served version of every model and its state in this isolate, as `POST /v2/repository/index` lists them. */
  list() {
    return serve({ env: this.env, ctx: this.ctx }, 'list', undefined, undefined, async (caller) => ({
      value: await repositoryEntries(caller, false),
    }))
  }
}
