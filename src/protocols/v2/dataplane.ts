/**
 * @module protocols/v2/dataplane — the Open Inference Protocol (KServe v2) with no transport in it:
 * server metadata, model metadata and readiness, inference, the repository index. The HTTP routes
 * (http/routes/v2.ts) and the service binding (rpc.ts) only translate their transport to calls
 * here, as KServe's REST and gRPC servers call its `dataplane`.
 * @see https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md
 */
import type { z } from 'zod'
import { readConfig } from '../../core/config'
import type { Config } from '../../core/config'
import { badRequest, ModelUnavailableError } from '../../core/errors'
import { isolate } from '../../isolate'
import type { ModelCache } from '../../cache/model-cache'
import { predict, withLease } from '../../predict'
import type { Caller, Prediction } from '../../predict'
import { cacheKey } from '../../repository/repository'
import { memoryBytes } from '../../runtime/footprint'
import type { ModelFormat } from '../../runtime/servable'
import type { Signature, TensorSpec } from '../../runtime/signature'
import type { tf } from '../../runtime/tf'
import { converter, datatypeOf } from '../datatypes'
import { bytesElements, checkBatch, noTransform } from '../encoded'
import { preparedOf } from '../images/classify'
import { imageParameters } from '../images/transform'
import { textElements, textSiblings } from '../text/bytes'
import { textParameters } from '../text/transform'
import type { InputTransform } from '../input-transform'
import { PackedTensor, unpack } from '../json-tensors'
import { checkInputNames, outputNames } from '../names'
import type { InferRequest, RequestInput } from '../schemas'
import { flatten, makeTensor, requestLimits, spendElements } from '../tensors'
import type { RequestLimits } from '../tensors'
import { decodeBinary } from './binary'

/** What `GET /v2` answers: the server and the protocol extensions it speaks. */
export const SERVER_METADATA = { name: 'warmserve', version: '0.1.0', extensions: ['binary_tensor_data'] }

const platformOf = (format: ModelFormat) => `tensorflowjs_${format.replace('-', '_')}`

const tensorMetadata = (spec: TensorSpec) => ({
  name: spec.name,
  datatype: datatypeOf(spec.dtype),
  shape: spec.shape ?? [-1],
})

/**
 * Model metadata. Answered without loading the model where its signature is known for certain
 * (`Isolate.knownSignature`), so a client or the try-it page listing models does not load them all.
 */
export async function modelMetadataV2(caller: Caller, name: string, version?: number) {
  const state = isolate()
  const repository = await state.repository(caller.env, caller.waitUntil)
  const versions = repository.served(name).map(String)
  // R2 candidates refused or not validated yet, with why: otherwise only the cron's log would say.
  const unserved = Object.entries(repository.rejected(name)).map(([v, r]) => ({
    version: v,
    state: r.deferred ? ('deferred' as const) : ('rejected' as const),
    reason: r.reason,
  }))
  const target = repository.resolve(name, { version })
  const { config } = target
  const answer = (
    { format, signature }: { format: ModelFormat; signature: Signature },
    memory: number | undefined,
    labels = config.labels as string[] | undefined,
  ) => {
    const parameters = {
      ...(config.description !== undefined && { description: config.description }),
      ...(unserved.length > 0 && { unserved_versions: unserved }),
      ...(memory !== undefined && { memory_bytes: memory }),
      ...(labels && { labels }),
      ...(labels &&
        (!config.detect || config.classify) && {
          classify: {
            output: config.classify?.output,
            top_k: config.classify?.top_k ?? 5,
            activation: config.classify?.activation ?? 'none',
          },
        }),
      ...(config.embed && { embed: config.embed }),
      // A detector's infer answers its raw tensors; :detect and the Models binding's run answer the boxes.
      ...(config.detect && { task: 'object-detection', detect: config.detect }),
    }
    return {
      name,
      versions,
      platform: platformOf(format),
      inputs: signature.inputs.map((spec) => {
        // An image input takes encoded images, one BYTES element each, preprocessed as its parameters say.
        const { image, text } = config.inputs?.[spec.name] ?? {}
        if (image) return { name: spec.name, datatype: 'BYTES', shape: [-1], parameters: imageParameters(image) }
        // A text input takes UTF-8 texts, one BYTES element each; its siblings from the same tokenizer may be left out.
        if (text) return { name: spec.name, datatype: 'BYTES', shape: [-1], parameters: textParameters(text) }
        return tensorMetadata(spec)
      }),
      outputs: signature.outputs.map(tensorMetadata),
      ...(Object.keys(parameters).length > 0 ? { parameters } : {}),
    }
  }
  // Loaded here, the model's measured memory is known too; described from the index, it is not yet.
  // A labels file is read when the model loads; inline labels are known without loading.
  const known = typeof config.labels === 'string' ? undefined : state.knownSignature(target)
  if (known) return answer(known, known.memoryBytes)
  return withLease(caller, name, { version: target.version }, async ({ target, lease }) =>
    answer(lease.model, memoryBytes(lease.model.footprint), preparedOf(target, lease.model).labels),
  )
}

/** Model readiness: the version loads (or is loaded); when it cannot, why, with the 503 that says when to retry. */
export async function modelReadyV2(
  caller: Caller,
  name: string,
  version?: number,
): Promise<{ name: string; ready: true } | { name: string; ready: false; error: ModelUnavailableError }> {
  try {
    return await withLease(caller, name, { version }, async () => ({ name, ready: true as const }))
  } catch (error) {
    if (!(error instanceof ModelUnavailableError)) throw error
    return { name, ready: false, error }
  }
}

/**
 * Builds one input tensor from `data` (flat, row-major, or nested) or from its raw bytes (the binary
 * extension's, or a typed array's), checked against `shape` and the signature.
 */
async function inputTensor(
  spec: TensorSpec,
  transform: InputTransform | undefined,
  input: z.infer<typeof RequestInput>,
  raw: Uint8Array | undefined,
  limits: RequestLimits,
  config: Config,
  model: string,
): Promise<tf.Tensor> {
  const where = `input '${input.name}'`
  if (input.datatype === 'BYTES') {
    // BYTES elements are encoded data for the input's transform (an image input: one image each).
    if (!transform) throw noTransform(spec, model, 'BYTES')
    if (raw && input.data !== undefined) throw badRequest(`${where}: send data or binary_data_size, not both`)
    checkBatch(input.shape[0] ?? 0, where, limits)
    const elements = bytesElements(input.shape, unpack(input.data), raw, where, config.MAX_IMAGE_BYTES)
    return transform.tensor(elements, (i) => `${where}[${i}]`, config, limits)
  }
  const count = input.shape.reduce((n, d) => n * d, 1)
  let values: ArrayLike<unknown>
  if (raw) {
    if (input.data !== undefined) throw badRequest(`${where}: send data or binary_data_size, not both`)
    spendElements(limits.elements, count, where)
    values = decodeBinary(input.datatype, raw, count, `${where} binary data`)
  } else {
    if (input.data === undefined)
      throw badRequest(
        `${where}: data is required (or parameters.binary_data_size with the bytes after the inference header)`,
      )
    const flat = flatten(input.data, `${where} data`, limits.elements)
    const size = flat instanceof PackedTensor ? flat.size : flat.values.length
    if (size !== count) {
      throw badRequest(`${where}: shape [${input.shape.join(', ')}] holds ${count} elements but data has ${size}`)
    }
    if (flat.shape.length > 1 && flat.shape.join() !== input.shape.join()) {
      throw badRequest(
        `${where}: nested data has shape [${flat.shape.join(', ')}] but shape says [${input.shape.join(', ')}]`,
      )
    }
    // Read from the body's bytes (json-tensors.ts): its float32 values serve a float32 input as they are.
    if (flat instanceof PackedTensor) {
      const convert = converter(input.datatype, spec.dtype, where)
      return makeTensor(spec, flat.reshaped(input.shape), `${where} data`, convert, limits, model)
    }
    values = flat.values
  }
  const convert = converter(input.datatype, spec.dtype, where)
  // Raw FP32 for a float32 input (finite, checked by decodeBinary) or INT32 for an int32 one: the view is the tensor's data.
  const exact =
    (values instanceof Float32Array && spec.dtype === 'float32') ||
    (values instanceof Int32Array && spec.dtype === 'int32')
  return makeTensor(spec, { shape: input.shape, values }, `${where} data`, convert, limits, model, exact)
}

/** One output of an inference answer, its data straight from tf.js (bools as 0/1 bytes). */
export interface InferOutput {
  name: string
  datatype: string
  shape: number[]
  data: Float32Array | Int32Array | Uint8Array
}

/** An inference answer before its wire form: `id` and the binary choice are the transport's to add. */
export interface InferAnswer {
  model_name: string
  model_version: string
  outputs: InferOutput[]
}

/** A parsed inference request: its body, and the inputs' raw bytes by input position (the binary extension's, or a typed array's). */
export interface InferInput {
  body: InferRequest
  raws: (Uint8Array | undefined)[]
}

/**
 * One inference through the one prediction path (src/predict.ts), whatever the transport: `read`
 * gives the parsed request once traffic control has let it in.
 */
export function inferV2(
  caller: Caller,
  name: string,
  version: number | undefined,
  read: () => Promise<InferInput>,
): Promise<Prediction<InferAnswer>> {
  const config = readConfig(caller.env)
  return predict(caller, name, { version }, read, ({ body, raws }) => ({
    outputs: (held) => {
      const filled = textSiblings(held, body)
      checkInputNames(held.lease.model.signature, [...body.inputs.map((i) => i.name), ...filled.keys()])
      return outputNames(
        held,
        body.outputs?.map((o) => o.name),
      )
    },
    format: () => 'v2',
    async feeds(held, feeds) {
      const specs = new Map(held.lease.model.signature.inputs.map((s) => [s.name, s]))
      const limits = requestLimits(config, held.target)
      const { transforms } = preparedOf(held.target, held.lease.model)
      const filled = textSiblings(held, body)
      for (const [i, input] of body.inputs.entries()) {
        const transform = transforms.get(input.name)
        if (transform?.kind !== 'text' || input.datatype !== 'BYTES') {
          feeds[input.name] = await inputTensor(specs.get(input.name)!, transform, input, raws[i], limits, config, name)
          continue
        }
        // Texts: one elements array for this input and the text-fed inputs it fills, so they share one encoding.
        const where = `input '${input.name}'`
        const elements = textElements(input, raws[i], where, limits, config)
        feeds[input.name] = await transform.tensor(elements, (j) => `${where}[${j}]`, config, limits)
        for (const [sibling, from] of filled) {
          if (from === input.name)
            feeds[sibling] = await transforms.get(sibling)!.tensor(elements, (j) => `${where}[${j}]`, config, limits)
        }
      }
    },
    async answer(held, results, names) {
      const outputs = await Promise.all(
        names.map(async (output): Promise<InferOutput> => {
          const tensor = results[output]!
          const data = (await tensor.data()) as InferOutput['data']
          return { name: output, datatype: datatypeOf(tensor.dtype as TensorSpec['dtype']), shape: tensor.shape, data }
        }),
      )
      return { model_name: name, model_version: String(held.target.version), outputs }
    },
  }))
}

/** A served version's state in this isolate, as Triton's repository index reports it. */
function versionState(status: ReturnType<ModelCache['status']>): {
  state: 'READY' | 'LOADING' | 'UNAVAILABLE'
  reason?: string
} {
  if (status?.state === 'AVAILABLE') return { state: 'READY' }
  if (status?.state === 'LOADING') return { state: 'LOADING' }
  if (status?.state === 'FAILED') return { state: 'UNAVAILABLE', reason: status.message }
  return { state: 'UNAVAILABLE', reason: 'not loaded in this isolate; loads on first use' }
}

/**
 * Triton's repository index (its model repository extension): every served version of every model
 * and its state here; only loaded ones when `ready`.
 */
export async function repositoryEntries(caller: Caller, ready: boolean) {
  const state = isolate()
  const repository = await state.repository(caller.env, caller.waitUntil)
  const entries = repository.names().flatMap((name) => {
    try {
      return repository
        .served(name)
        .map((v) => ({ name, version: String(v), ...versionState(state.cache.status(cacheKey(name, v))) }))
    } catch (error) {
      // A model whose config.json or version policy is broken is listed, with the reason it cannot serve.
      return [{ name, version: '', state: 'UNAVAILABLE' as const, reason: (error as Error).message }]
    }
  })
  return ready ? entries.filter((e) => e.state === 'READY') : entries
}
