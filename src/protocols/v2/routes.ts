/**
 * @module protocols/v2/routes — the Open Inference Protocol (KServe v2) over HTTP/REST, spoken by Triton,
 * KServe, MLServer and Seldon clients.
 * @see https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md
 */
import { Hono } from 'hono'
import type { Context } from 'hono'
import { z } from 'zod'
import { readJson } from '../../http/body'
import { binaryResponse, decodeBinary, readInferBody, splitBinary } from './binary'
import { readConfig } from '../../config'
import type { Config } from '../../config'
import { bytesElements, checkBatch, noTransform } from '../encoded'
import { preparedOf } from '../images/classify'
import { imageParameters } from '../images/transform'
import type { InputTransform } from '../transforms'
import { converter, datatypeOf } from '../datatypes'
import { badRequest, ModelUnavailableError } from '../../errors'
import { isolate } from '../../isolate'
import { cacheKey } from '../../repository/repository'
import type { ModelCache } from '../../cache'
import { memoryBytes } from '../../runtime/footprint'
import type { ModelFormat, Servable } from '../../runtime/servable'
import type { Signature, TensorSpec } from '../../runtime/signature'
import { tf } from '../../runtime/tf'
import { InferRequest, parseBody, RepositoryIndexRequest } from '../schemas'
import type { RequestInput } from '../schemas'
import { flatten, makeTensor, requestLimits, spendElements } from '../tensors'
import { readTensorJson, tensorText, unpack, V2_TENSORS } from '../json-tensors'
import type { TensorData } from '../json-tensors'
import type { RequestLimits } from '../tensors'
import { routeDocs } from '../../http/openapi'
import { callerOf, checkInputNames, methodNotAllowed, outputNames, parseVersion, setPredictionHeaders, waitUntilOf, withTrafficSlot, withModel } from '../../http/common'
import { predict, withLease } from '../../predict'
import type { Caller, Prediction } from '../../predict'
import type { AppEnv } from '../../http/common'

type Ctx = Context<AppEnv>

const platformOf = (format: ModelFormat) => `tensorflowjs_${format.replace('-', '_')}`

const tensorMetadata = (spec: TensorSpec) => ({ name: spec.name, datatype: datatypeOf(spec.dtype), shape: spec.shape ?? [-1] })

/**
 * Model metadata. Answered without loading the model where its signature is known for certain
 * (`Isolate.knownSignature`), so a client or the try-it page listing models does not load them all.
 */
export async function modelMetadataV2(caller: Caller, name: string, version?: number) {
  const state = isolate()
  const repository = await state.repository(caller.env, caller.waitUntil)
  const versions = repository.served(name).map(String)
  const target = repository.resolve(name, { version })
  const { config } = target
  const answer = ({ format, signature }: { format: ModelFormat; signature: Signature }, memory: number | undefined, labels = config.labels as string[] | undefined) => {
    const parameters = {
      ...(config.description !== undefined && { description: config.description }),
      ...(memory !== undefined && { memory_bytes: memory }),
      ...(labels && { labels }),
      ...(labels && (!config.detect || config.classify) && { classify: { output: config.classify?.output, top_k: config.classify?.top_k ?? 5, activation: config.classify?.activation ?? 'none' } }),
      // A detector's infer answers its raw tensors; :detect and the Models binding's run answer the boxes.
      ...(config.detect && { task: 'object-detection', detect: config.detect }),
    }
    return {
      name,
      versions,
      platform: platformOf(format),
      inputs: signature.inputs.map((spec) => {
        // An image input takes encoded images, one BYTES element each, preprocessed as its parameters say.
        const image = config.inputs?.[spec.name]?.image
        return image ? { name: spec.name, datatype: 'BYTES', shape: [-1], parameters: imageParameters(image) } : tensorMetadata(spec)
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

const modelMetadata = async (c: Ctx, name: string, version?: string) => c.json(await modelMetadataV2(callerOf(c), name, parseVersion(version)))

async function modelReady(c: Ctx, name: string, version?: string) {
  try {
    return await withModel(c, name, { version: parseVersion(version) }, async () => c.json({ name, ready: true }))
  } catch (error) {
    if (!(error instanceof ModelUnavailableError)) throw error
    return c.json({ name, ready: false, error: error.message }, 503, error.headers)
  }
}

/**
 * Builds one input tensor from `data` (flat, row-major, or nested) or from its raw bytes after the
 * inference header, checked against `shape` and the signature.
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
    return transform.tensor(elements, (i) => `${where}[${i}]`, config)
  }
  const count = input.shape.reduce((n, d) => n * d, 1)
  let values: ArrayLike<unknown>
  if (raw) {
    if (input.data !== undefined) throw badRequest(`${where}: send data or binary_data_size, not both`)
    spendElements(limits.elements, count, where)
    values = decodeBinary(input.datatype, raw, count, `${where} binary data`)
  } else {
    if (input.data === undefined) throw badRequest(`${where}: data is required (or parameters.binary_data_size with the bytes after the inference header)`)
    const flat = flatten(input.data, `${where} data`, limits.elements)
    if (flat.values.length !== count) {
      throw badRequest(`${where}: shape [${input.shape.join(', ')}] holds ${count} elements but data has ${flat.values.length}`)
    }
    if (flat.shape.length > 1 && flat.shape.join() !== input.shape.join()) {
      throw badRequest(`${where}: nested data has shape [${flat.shape.join(', ')}] but shape says [${input.shape.join(', ')}]`)
    }
    values = flat.values
  }
  const convert = converter(input.datatype, spec.dtype, where)
  // Raw FP32 for a float32 input (finite, checked by decodeBinary) or INT32 for an int32 one: the view is the tensor's data.
  const exact = (values instanceof Float32Array && spec.dtype === 'float32') || (values instanceof Int32Array && spec.dtype === 'int32')
  return makeTensor(spec, { shape: input.shape, values }, `${where} data`, convert, limits, model, exact)
}

/** One output of an inference answer, its data straight from tf.js (bools as 0/1 bytes). */
export interface InferOutput {
  name: string
  datatype: string
  shape: number[]
  data: Float32Array | Int32Array | Uint8Array
}

/** An inference answer before its wire form: `id` and the binary choice are the caller's to add. */
export interface InferAnswer {
  model_name: string
  model_version: string
  outputs: InferOutput[]
}

/**
 * A parsed inference request through the one prediction path (src/predict.ts): what `…/infer` and
 * the service binding's `infer` share. `raws` are the inputs' bytes (the binary extension's, or a
 * typed array's), by input position.
 */
export function inferV2(caller: Caller, name: string, version: number | undefined, body: InferRequest, raws: (Uint8Array | undefined)[]): Promise<Prediction<InferAnswer>> {
  const config = readConfig(caller.env)
  return predict<InferAnswer>(caller, name, { version }, {
    outputs: (held) => {
      checkInputNames(held.lease.model.signature, body.inputs.map((i) => i.name))
      return outputNames(held, body.outputs?.map((o) => o.name))
    },
    format: () => 'v2',
    async feeds(held, feeds) {
      const specs = new Map(held.lease.model.signature.inputs.map((s) => [s.name, s]))
      const limits = requestLimits(config, held.target)
      const { transforms } = preparedOf(held.target, held.lease.model)
      for (const [i, input] of body.inputs.entries()) {
        feeds[input.name] = await inputTensor(specs.get(input.name)!, transforms.get(input.name), input, raws[i], limits, config, name)
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
  })
}

async function infer(c: Ctx, name: string, version?: string) {
  const config = readConfig(c.env)
  const selector = { version: parseVersion(version) }
  return withTrafficSlot(c, name, selector, async (caller) => {
    const { header, binary } = await readInferBody(c.req.raw, config.MAX_BODY_BYTES, () =>
      readJson(c.req.raw, config.MAX_BODY_BYTES, (bytes) => readTensorJson(bytes, V2_TENSORS, config.MAX_TENSOR_ELEMENTS)),
    )
    const body = parseBody(InferRequest, header)
    const raws = splitBinary(body.inputs.map((i) => i.parameters?.binary_data_size), binary)
    const prediction = await inferV2(caller, name, selector.version, body, raws)
    setPredictionHeaders(c, prediction)
    const binaryOut = (output: string) => body.outputs?.find((r) => r.name === output)?.parameters?.binary_data ?? body.parameters?.binary_data_output ?? false
    const parts: Uint8Array[] = []
    // The response as JSON text, each output's data written from its typed array (json-tensors.ts):
    // byte for byte what JSON.stringify writes for {...answer, id?, outputs} with the data as arrays.
    const outputs = prediction.value.outputs.map(({ data, name: output, datatype, shape }) => {
      const described = `{"name":${JSON.stringify(output)},"datatype":${JSON.stringify(datatype)},"shape":${JSON.stringify(shape)}`
      if (binaryOut(output)) {
        const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        parts.push(bytes)
        return `${described},"parameters":{"binary_data_size":${bytes.byteLength}}}`
      }
      return `${described},"data":${tensorText(data, [data.length], datatype === 'BOOL')}}`
    })
    const { model_name, model_version } = prediction.value
    const id = body.id !== undefined ? `,"id":${JSON.stringify(body.id)}` : ''
    const response = `{"model_name":${JSON.stringify(model_name)},"model_version":${JSON.stringify(model_version)},"outputs":[${outputs.join(',')}]${id}}`
    return parts.length > 0 ? binaryResponse(response, parts, new Headers(c.res.headers)) : c.body(response, 200, { 'Content-Type': 'application/json' })
  })
}

/** A served version's state in this isolate, as Triton's repository index reports it. */
function versionState(status: ReturnType<ModelCache['status']>): { state: 'READY' | 'LOADING' | 'UNAVAILABLE'; reason?: string } {
  if (status?.state === 'AVAILABLE') return { state: 'READY' }
  if (status?.state === 'LOADING') return { state: 'LOADING' }
  if (status?.state === 'FAILED') return { state: 'UNAVAILABLE', reason: status.message }
  return { state: 'UNAVAILABLE', reason: 'not loaded in this isolate; loads on first use' }
}

/**
 * Triton's repository index (its model repository extension): every served version of every model,
 * with its state in this isolate. The body is optional; `{"ready": true}` lists only loaded versions.
 */
async function repositoryIndex(c: Ctx) {
  const config = readConfig(c.env)
  // Triton's clients may send no body at all: that is an empty request, not malformed JSON.
  const empty = c.req.raw.body === null || c.req.header('content-length') === '0'
  const body = empty ? {} : parseBody(RepositoryIndexRequest, await readJson(c.req.raw, config.MAX_BODY_BYTES))
  return c.json(await repositoryEntries(callerOf(c), body.ready ?? false))
}

/** Every served version of every model and its state here; only loaded ones when `ready`. */
export async function repositoryEntries(caller: Caller, ready: boolean) {
  const state = isolate()
  const repository = await state.repository(caller.env, caller.waitUntil)
  const entries = repository.names().flatMap((name) => {
    try {
      return repository.served(name).map((v) => ({ name, version: String(v), ...versionState(state.cache.status(cacheKey(name, v))) }))
    } catch (error) {
      // A model whose config.json or version policy is broken is listed, with the reason it cannot serve.
      return [{ name, version: '', state: 'UNAVAILABLE' as const, reason: (error as Error).message }]
    }
  })
  return ready ? entries.filter((e) => e.state === 'READY') : entries
}

export const v2 = new Hono<AppEnv>()
  .get('/v2', routeDocs.v2Server, (c) => c.json({ name: 'warmserve', version: '0.1.0', extensions: ['binary_tensor_data'] }))
  .get('/v2/models/:name', routeDocs.v2Metadata, (c) => modelMetadata(c, c.req.param('name')))
  .get('/v2/models/:name/versions/:version', routeDocs.v2MetadataVersion, (c) => modelMetadata(c, c.req.param('name'), c.req.param('version')))
  .get('/v2/models/:name/ready', routeDocs.v2Ready, (c) => modelReady(c, c.req.param('name')))
  .get('/v2/models/:name/versions/:version/ready', routeDocs.v2ReadyVersion, (c) => modelReady(c, c.req.param('name'), c.req.param('version')))
  .post('/v2/models/:name/infer', routeDocs.v2Infer, (c) => infer(c, c.req.param('name')))
  .post('/v2/models/:name/versions/:version/infer', routeDocs.v2InferVersion, (c) => infer(c, c.req.param('name'), c.req.param('version')))
  .post('/v2/repository/index', routeDocs.repositoryIndex, (c) => repositoryIndex(c))
  .all('/v2', methodNotAllowed('GET'))
  .all('/v2/repository/index', methodNotAllowed('POST'))
  .all('/v2/models/:name', methodNotAllowed('GET'))
  .all('/v2/models/:name/versions/:version', methodNotAllowed('GET'))
  .all('/v2/models/:name/ready', methodNotAllowed('GET'))
  .all('/v2/models/:name/versions/:version/ready', methodNotAllowed('GET'))
  .all('/v2/models/:name/infer', methodNotAllowed('POST'))
  .all('/v2/models/:name/versions/:version/infer', methodNotAllowed('POST'))
