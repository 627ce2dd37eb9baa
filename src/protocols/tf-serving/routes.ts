/**
 * @module protocols/tf-serving/routes — TF Serving's REST API, so its clients work unchanged.
 * @see https://www.tensorflow.org/tfx/serving/api_rest
 */
import { Hono } from 'hono'
import type { Context } from 'hono'
import { readJson } from '../../http/body'
import { readConfig } from '../../config'
import { badRequest, describeValue, ModelUnavailableError, notFound, quote } from '../../errors'
import { isolate } from '../../isolate'
import type { Rejection } from '../../repository/pointer'
import type { Selector } from '../../repository/repository'
import { DEFAULT_SIGNATURE, dtypeToTensorFlow } from '../../runtime/signature'
import type { Signature, TensorSpec } from '../../runtime/signature'
import { tf } from '../../runtime/tf'
import { parseBody, PredictRequest } from '../schemas'
import { PackedTensor, readTensorJson, TF_SERVING_TENSORS } from '../json-tensors'
import { requestLimits, tensorToJSON } from '../tensors'
import { isB64, jsonFeed } from '../encoded'
import { preparedOf } from '../images/classify'
import { classify } from './classify'
import { detect } from './detect'
import type { RequestLimits } from '../tensors'
import { routeDocs } from '../../http/openapi'
import { callerOf, checkInputNames, methodNotAllowed, outputNames, parseLabel, parseVersion, setPredictionHeaders, waitUntilOf, withTrafficSlot, withModel } from '../../http/common'
import { predict } from '../../predict'
import type { Caller, Prediction } from '../../predict'
import type { AppEnv } from '../../http/common'

type Ctx = Context<AppEnv>

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Splits `iris:predict` into the model name and its verb. */
function splitVerb(segment: string): { name: string; verb?: string } {
  const at = segment.lastIndexOf(':')
  return at === -1 ? { name: segment } : { name: segment.slice(0, at), verb: segment.slice(at + 1) }
}

/** How a path names the version: `versions/{v}`, `labels/{l}`, or not at all (the default version). */
type VersionPath = { kind: 'versions' | 'labels'; segment: string } | undefined

function selectorOf(pick: VersionPath): Selector {
  if (!pick) return {}
  return pick.kind === 'versions' ? { version: parseVersion(pick.segment) } : { label: parseLabel(pick.segment) }
}

// ===== Status =====

/** A rejected R2 candidate, as TF Serving reports a version that will not load. */
const rejectedStatus = (version: string, rejection: Rejection) => ({
  version,
  state: 'END',
  status: { error_code: 'FAILED_PRECONDITION', error_message: `rejected by validation: ${rejection.reason}` },
})

async function status(c: Ctx, name: string, pick?: VersionPath) {
  const verb = splitVerb(pick?.segment ?? name).verb
  if (verb !== undefined) {
    if (verb === 'predict' || verb === 'classify' || verb === 'detect') return methodNotAllowed('POST')(c)
    throw notFound(`no route for GET ${new URL(c.req.url).pathname}`)
  }
  const selector = selectorOf(pick)
  const repository = await isolate().repository(c.env, waitUntilOf(c))
  const rejected = repository.rejected(name)
  if (selector.version !== undefined && !repository.versions(name).includes(selector.version)) {
    const rejection = rejected[String(selector.version)]
    if (rejection) return c.json({ model_version_status: [rejectedStatus(String(selector.version), rejection)] })
  }
  const target = repository.resolve(name, selector)
  const version = String(target.version)
  // Without a version in the path, the status also lists R2 candidates that were refused, with why.
  const refused = pick ? [] : Object.entries(rejected).map(([v, r]) => rejectedStatus(v, r))
  try {
    return await withModel(c, name, { version: target.version }, async () =>
      c.json({ model_version_status: [{ version, state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }, ...refused] }),
    )
  } catch (error) {
    // TF Serving reports a version that failed to load as END with its error, not as an HTTP error.
    if (!(error instanceof ModelUnavailableError)) throw error
    return c.json(
      { model_version_status: [{ version, state: 'END', status: { error_code: 'UNAVAILABLE', error_message: error.message } }, ...refused] },
      200,
      error.headers,
    )
  }
}

// ===== Metadata =====

function tensorInfo(spec: TensorSpec) {
  return {
    dtype: dtypeToTensorFlow(spec.dtype),
    tensor_shape:
      spec.shape === null
        ? { dim: [], unknown_rank: true }
        : { dim: spec.shape.map((size) => ({ size: String(size), name: '' })), unknown_rank: false },
    name: spec.tensorName,
  }
}

/** The signature in TF Serving's `signature_def` shape (int64 sizes as strings, as proto JSON has them). */
export function signatureDef(signature: Signature) {
  return {
    inputs: Object.fromEntries(signature.inputs.map((s) => [s.name, tensorInfo(s)])),
    outputs: Object.fromEntries(signature.outputs.map((s) => [s.name, tensorInfo(s)])),
    method_name: 'tensorflow/serving/predict',
  }
}

async function metadata(c: Ctx, name: string, pick?: VersionPath) {
  return withModel(c, name, selectorOf(pick), async ({ target, lease }) => {
    const { transforms, labels } = preparedOf(target, lease.model)
    // An input with a transform takes encoded strings, one per row: DT_STRING [-1], as TF Serving shows image bytes.
    const signature = {
      ...lease.model.signature,
      inputs: lease.model.signature.inputs.map((s) => (transforms.has(s.name) ? { ...s, dtype: 'string' as const, shape: [-1] } : s)),
    }
    return c.json({
      model_spec: { name, signature_name: '', version: String(target.version) },
      metadata: { signature_def: { signature_def: { [DEFAULT_SIGNATURE]: signatureDef(signature) } }, ...(labels ? { labels } : {}) },
    })
  })
}

// ===== Predict =====

function namedValues(signature: Signature, value: Record<string, unknown>, where: string): Map<TensorSpec, unknown> {
  checkInputNames(signature, Object.keys(value), where)
  return new Map(signature.inputs.map((s) => [s, value[s.name]]))
}

/** Row format: one entry per batch row, a bare value or an object keyed by input name. */
function rowFeeds(signature: Signature, instances: unknown[] | PackedTensor, limits: RequestLimits): Map<TensorSpec, [unknown, string]> {
  const rows = instances instanceof PackedTensor ? instances.shape[0]! : instances.length
  if (rows > limits.maxBatch) {
    throw badRequest(`'instances' has ${rows} rows, more than the limit of ${limits.maxBatch} (${limits.batchRule})`)
  }
  if (instances instanceof PackedTensor || !(isObject(instances[0]) && !isB64(instances[0]))) {
    // Bare values, one per row; {"b64": …} is one binary value (TF Serving's convention), not an object keyed by input name.
    if (signature.inputs.length !== 1) {
      throw badRequest(`the model has ${signature.inputs.length} inputs, so each of 'instances' must be an object keyed by input name`)
    }
    return new Map([[signature.inputs[0]!, [instances, 'instances']]])
  }
  const columns = new Map(signature.inputs.map((s): [TensorSpec, unknown[]] => [s, []]))
  instances.forEach((instance, i) => {
    if (!isObject(instance)) throw badRequest(`instances[${i}]: expected an object keyed by input name like instances[0], got ${describeValue(instance)}`)
    for (const [spec, value] of namedValues(signature, instance, `instances[${i}]`)) columns.get(spec)!.push(value)
  })
  return new Map([...columns].map(([spec, values]) => [spec, [values, `instances[*]['${spec.name}']`]]))
}

/** Columnar format: the whole tensor per input, batch dimension included. */
function columnarFeeds(signature: Signature, inputs: unknown): Map<TensorSpec, [unknown, string]> {
  if (!isObject(inputs) || inputs instanceof PackedTensor) {
    if (signature.inputs.length !== 1) {
      throw badRequest(`the model has ${signature.inputs.length} inputs, so 'inputs' must be an object keyed by input name`)
    }
    return new Map([[signature.inputs[0]!, [inputs, 'inputs']]])
  }
  return new Map([...namedValues(signature, inputs, 'inputs')].map(([spec, value]) => [spec, [value, `inputs['${spec.name}']`]]))
}

async function predictionsJSON(names: string[], outputs: Record<string, tf.Tensor>, rows: boolean) {
  const values = await Promise.all(names.map((name) => tensorToJSON(outputs[name]!)))
  if (names.length === 1) return values[0]
  if (!rows) return Object.fromEntries(names.map((name, i) => [name, values[i]]))
  // Row format with several outputs: one object per row, which needs every output to share the batch.
  const batch = (values[0] as unknown[]).length
  if (!values.every((v) => Array.isArray(v) && v.length === batch)) {
    throw badRequest("the model's outputs differ in batch size; use the columnar format ('inputs')")
  }
  return Array.from({ length: batch }, (_, row) => Object.fromEntries(names.map((name, i) => [name, (values[i] as unknown[])[row]])))
}

/** A TF Serving predict answer: `{predictions}` for the row format, `{outputs}` for the columnar one. */
export type PredictResponse = { predictions: unknown } | { outputs: unknown }

/**
 * A parsed predict request through the one prediction path (src/predict.ts): what `:predict` and the
 * service binding's `run` share. `packedRows`: the rows, when the body's reader read them as one
 * tensor (json-tensors.ts); `body.instances` then only stands for them in validation.
 */
export function predictTFServing(
  caller: Caller,
  name: string,
  selector: Selector,
  body: PredictRequest,
  packedRows?: PackedTensor,
): Promise<Prediction<PredictResponse>> {
  if (body.signature_name !== undefined && body.signature_name !== DEFAULT_SIGNATURE) {
    throw badRequest(`signature ${quote(body.signature_name)} not found; the model serves '${DEFAULT_SIGNATURE}'`)
  }
  const config = readConfig(caller.env)
  const rows = body.instances !== undefined
  return predict<PredictResponse>(caller, name, selector, {
    outputs: (held) => outputNames(held),
    format: () => (rows ? 'tf-serving-rows' : 'tf-serving-columns'),
    async feeds(held, feeds) {
      const signature = held.lease.model.signature
      const limits = requestLimits(config, held.target)
      const plan = rows ? rowFeeds(signature, packedRows ?? body.instances!, limits) : columnarFeeds(signature, body.inputs)
      const { transforms } = preparedOf(held.target, held.lease.model)
      for (const [spec, [value, where]] of plan) feeds[spec.name] = await jsonFeed(spec, transforms.get(spec.name), value, where, limits, config, name)
    },
    async answer(_held, outputs, names) {
      const result = await predictionsJSON(names, outputs, rows)
      return rows ? { predictions: result } : { outputs: result }
    },
  })
}

async function predictBody(c: Ctx, name: string, pick?: VersionPath) {
  const config = readConfig(c.env)
  const selector = selectorOf(pick)
  return withTrafficSlot(c, name, selector, async (caller) => {
    const json = await readJson(c.req.raw, config.MAX_BODY_BYTES, (bytes) => readTensorJson(bytes, TF_SERVING_TENSORS, config.MAX_TENSOR_ELEMENTS))
    // Rows read as one tensor are validated as the list of rows they are (non-empty, as the schema asks).
    const packedRows = isObject(json) && json.instances instanceof PackedTensor ? json.instances : undefined
    const body = parseBody(PredictRequest, packedRows ? { ...(json as Record<string, unknown>), instances: [packedRows] } : json)
    const prediction = await predictTFServing(caller, name, selector, body, packedRows)
    setPredictionHeaders(c, prediction)
    return c.json(prediction.value)
  })
}

// ===== Routes =====

const versions = (c: Ctx): VersionPath => ({ kind: 'versions', segment: c.req.param('version')! })
const labels = (c: Ctx): VersionPath => ({ kind: 'labels', segment: c.req.param('label')! })

export const tfServing = new Hono<AppEnv>()
  .get('/v1/models/:name', routeDocs.tfStatus, (c) => status(c, c.req.param('name')))
  .get('/v1/models/:name/versions/:version', routeDocs.tfStatusVersion, (c) => status(c, c.req.param('name'), versions(c)))
  .get('/v1/models/:name/labels/:label', routeDocs.tfStatusLabel, (c) => status(c, c.req.param('name'), labels(c)))
  .get('/v1/models/:name/metadata', routeDocs.tfMetadata, (c) => metadata(c, c.req.param('name')))
  .get('/v1/models/:name/versions/:version/metadata', routeDocs.tfMetadataVersion, (c) => metadata(c, c.req.param('name'), versions(c)))
  .get('/v1/models/:name/labels/:label/metadata', routeDocs.tfMetadataLabel, (c) => metadata(c, c.req.param('name'), labels(c)))
  .post('/v1/models/:target', routeDocs.tfPredict, (c) => predictRoute(c, c.req.param('target')))
  .post('/v1/models/:name/versions/:version', routeDocs.tfPredictVersion, (c) => predictRoute(c, c.req.param('name'), versions(c)))
  .post('/v1/models/:name/labels/:label', routeDocs.tfPredictLabel, (c) => predictRoute(c, c.req.param('name'), labels(c)))
  .all('/v1/models/:name/metadata', methodNotAllowed('GET'))
  .all('/v1/models/:name/versions/:version/metadata', methodNotAllowed('GET'))
  .all('/v1/models/:name/labels/:label/metadata', methodNotAllowed('GET'))
  .all('/v1/models/:target', methodNotAllowed('GET, POST'))
  .all('/v1/models/:name/versions/:version', methodNotAllowed('GET, POST'))
  .all('/v1/models/:name/labels/:label', methodNotAllowed('GET, POST'))

/**
 * POST on `{name}:predict`, or on `versions/{v}:predict` / `labels/{l}:predict`: the verb ends the
 * last path segment, which is the model's name, or the version or label when `pick` says so.
 */
function predictRoute(c: Ctx, model: string, pick?: VersionPath) {
  const { name: last, verb } = splitVerb(pick?.segment ?? model)
  if (verb === undefined) return methodNotAllowed('GET')(c)
  if (verb !== 'predict' && verb !== 'classify' && verb !== 'detect') throw notFound(`':${verb}' is not supported; warmserve serves ':predict', ':classify' and ':detect'`)
  const [name, version] = pick === undefined ? [last, undefined] : [model, { kind: pick.kind, segment: last }]
  if (verb === 'detect') return detect(c, name, selectorOf(version))
  return verb === 'classify' ? classify(c, name, selectorOf(version)) : predictBody(c, name, version)
}
