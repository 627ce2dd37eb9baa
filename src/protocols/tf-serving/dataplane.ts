/**
 * @module protocols/tf-serving/dataplane — TF Serving's REST API with no transport in it: model
 * status, metadata and predict (`:classify` is protocols/tf-serving/classify.ts). The HTTP routes
 * (http/routes/tf-serving.ts) and the service binding (rpc.ts) only translate their transport
 * to calls here.
 * @see https://www.tensorflow.org/tfx/serving/api_rest
 */
import { readConfig } from '../../core/config'
import { badRequest, describeValue, isObject, ModelUnavailableError, quote } from '../../core/errors'
import { isolate } from '../../isolate'
import { predict, withLease } from '../../predict'
import type { Caller, Prediction } from '../../predict'
import type { Rejection } from '../../repository/pointer'
import type { ResolvedVersion, Selector } from '../../repository/repository'
import { DEFAULT_SIGNATURE, dtypeToTensorFlow } from '../../runtime/signature'
import type { Signature, TensorSpec } from '../../runtime/signature'
import type { tf } from '../../runtime/tf'
import { isB64, jsonFeed } from '../encoded'
import { preparedOf } from '../images/classify'
import { PackedTensor } from '../json-tensors'
import { checkInputNames, outputNames } from '../names'
import type { PredictRequest } from '../schemas'
import { requestLimits, tensorToJSON } from '../tensors'
import type { RequestLimits } from '../tensors'

/** Refuses a `signature_name` other than the one signature a model serves. */
export function checkSignatureName(signatureName: string | undefined): void {
  if (signatureName !== undefined && signatureName !== DEFAULT_SIGNATURE) {
    throw badRequest(`signature ${quote(signatureName)} not found; the model serves '${DEFAULT_SIGNATURE}'`)
  }
}

// ===== Status =====

/** TF Serving's model status answer: each version's state, and why it is not AVAILABLE. */
export interface ModelStatus {
  model_version_status: { version: string; state: string; status: { error_code: string; error_message: string } }[]
}

/**
 * A rejected R2 candidate, as TF Serving reports a version that will not load; a deferred one as a
 * version still on its way (START), with why it is not validated yet.
 */
const rejectedStatus = (version: string, rejection: Rejection) =>
  rejection.deferred
    ? {
        version,
        state: 'START',
        status: { error_code: 'UNAVAILABLE', error_message: `validation deferred: ${rejection.reason}` },
      }
    : {
        version,
        state: 'END',
        status: { error_code: 'FAILED_PRECONDITION', error_message: `rejected by validation: ${rejection.reason}` },
      }

/**
 * A model's version status. `named`: the request named a version or label (then R2 candidates that
 * were refused are not listed beside it). TF Serving reports a version that failed to load as END
 * with its error, not as an error of the request: `headers` then carries the load's `Retry-After`.
 */
export async function modelStatusTF(
  caller: Caller,
  name: string,
  selector: Selector,
  named: boolean,
): Promise<{ body: ModelStatus; headers?: Record<string, string> }> {
  const repository = await isolate().repository(caller.env, caller.waitUntil)
  const rejected = repository.rejected(name)
  if (selector.version !== undefined && !repository.versions(name).includes(selector.version)) {
    const rejection = rejected[String(selector.version)]
    if (rejection) return { body: { model_version_status: [rejectedStatus(String(selector.version), rejection)] } }
  }
  const target = repository.resolve(name, selector)
  const version = String(target.version)
  // Without a version in the path, the status also lists R2 candidates that were refused, with why.
  const refused = named ? [] : Object.entries(rejected).map(([v, r]) => rejectedStatus(v, r))
  try {
    return await withLease(caller, name, { version: target.version }, async () => ({
      body: {
        model_version_status: [
          { version, state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
          ...refused,
        ],
      },
    }))
  } catch (error) {
    if (!(error instanceof ModelUnavailableError)) throw error
    return {
      body: {
        model_version_status: [
          { version, state: 'END', status: { error_code: 'UNAVAILABLE', error_message: error.message } },
          ...refused,
        ],
      },
      headers: error.headers,
    }
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

/** A model's metadata: its signature as TF Serving shows it, and its labels when it has them. */
export async function modelMetadataTF(caller: Caller, name: string, selector: Selector) {
  // From the index where the signature is known there (Isolate.knownSignature): listing loads nothing.
  const state = isolate()
  const target = (await state.repository(caller.env, caller.waitUntil)).resolve(name, selector)
  const known = typeof target.config.labels === 'string' ? undefined : state.knownSignature(target)
  if (known) return metadataAnswer(name, target, known)
  return withLease(caller, name, selector, async ({ target, lease }) => metadataAnswer(name, target, lease.model))
}

function metadataAnswer(name: string, target: ResolvedVersion, model: { signature: Signature }) {
  const { transforms, labels } = preparedOf(target, model)
  // An input with a transform takes encoded strings, one per row: DT_STRING [-1], as TF Serving shows image bytes.
  const signature = {
    ...model.signature,
    inputs: model.signature.inputs.map((s) =>
      transforms.has(s.name) ? { ...s, dtype: 'string' as const, shape: [-1] } : s,
    ),
  }
  return {
    model_spec: { name, signature_name: '', version: String(target.version) },
    metadata: {
      signature_def: { signature_def: { [DEFAULT_SIGNATURE]: signatureDef(signature) } },
      ...(labels ? { labels } : {}),
    },
  }
}

// ===== Predict =====

function namedValues(signature: Signature, value: Record<string, unknown>, where: string): Map<TensorSpec, unknown> {
  checkInputNames(signature, Object.keys(value), where)
  return new Map(signature.inputs.map((s) => [s, value[s.name]]))
}

/** Row format: one entry per batch row, a bare value or an object keyed by input name. */
function rowFeeds(
  signature: Signature,
  instances: unknown[] | PackedTensor,
  limits: RequestLimits,
): Map<TensorSpec, [unknown, string]> {
  const rows = instances instanceof PackedTensor ? instances.shape[0]! : instances.length
  if (rows > limits.maxBatch) {
    throw badRequest(`'instances' has ${rows} rows, more than the limit of ${limits.maxBatch} (${limits.batchRule})`)
  }
  if (instances instanceof PackedTensor || !(isObject(instances[0]) && !isB64(instances[0]))) {
    // Bare values, one per row; {"b64": …} is one binary value (TF Serving's convention), not an object keyed by input name.
    if (signature.inputs.length !== 1) {
      throw badRequest(
        `the model has ${signature.inputs.length} inputs, so each of 'instances' must be an object keyed by input name`,
      )
    }
    return new Map([[signature.inputs[0]!, [instances, 'instances']]])
  }
  const columns = new Map(signature.inputs.map((s): [TensorSpec, unknown[]] => [s, []]))
  instances.forEach((instance, i) => {
    if (!isObject(instance))
      throw badRequest(
        `instances[${i}]: expected an object keyed by input name like instances[0], got ${describeValue(instance)}`,
      )
    for (const [spec, value] of namedValues(signature, instance, `instances[${i}]`)) columns.get(spec)!.push(value)
  })
  return new Map([...columns].map(([spec, values]) => [spec, [values, `instances[*]['${spec.name}']`]]))
}

/** Columnar format: the whole tensor per input, batch dimension included. */
function columnarFeeds(signature: Signature, inputs: unknown): Map<TensorSpec, [unknown, string]> {
  if (!isObject(inputs) || inputs instanceof PackedTensor) {
    if (signature.inputs.length !== 1) {
      throw badRequest(
        `the model has ${signature.inputs.length} inputs, so 'inputs' must be an object keyed by input name`,
      )
    }
    return new Map([[signature.inputs[0]!, [inputs, 'inputs']]])
  }
  return new Map(
    [...namedValues(signature, inputs, 'inputs')].map(([spec, value]) => [spec, [value, `inputs['${spec.name}']`]]),
  )
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
  return Array.from({ length: batch }, (_, row) =>
    Object.fromEntries(names.map((name, i) => [name, (values[i] as unknown[])[row]])),
  )
}

/** A TF Serving predict answer: `{predictions}` for the row format, `{outputs}` for the columnar one. */
export type PredictResponse = { predictions: unknown } | { outputs: unknown }

/**
 * A parsed predict request. `packedRows`: the rows, when the body's reader read them as one tensor
 * (json-tensors.ts); `body.instances` then only stands for them in validation.
 */
export interface PredictInput {
  body: PredictRequest
  packedRows?: PackedTensor
}

/** A parsed JSON body as a predict request: rows read as one tensor are validated as the list of rows they are. */
export function predictInput(json: unknown, parse: (value: unknown) => PredictRequest): PredictInput {
  const packedRows = isObject(json) && json.instances instanceof PackedTensor ? json.instances : undefined
  return {
    body: parse(packedRows ? { ...(json as Record<string, unknown>), instances: [packedRows] } : json),
    packedRows,
  }
}

/**
 * One predict request through the one prediction path (src/predict.ts), whatever the transport:
 * `read` gives the parsed request once traffic control has let it in.
 */
export function predictTFServing(
  caller: Caller,
  name: string,
  selector: Selector,
  read: () => Promise<PredictInput>,
): Promise<Prediction<PredictResponse>> {
  const config = readConfig(caller.env)
  const checked = async () => {
    const input = await read()
    checkSignatureName(input.body.signature_name)
    return input
  }
  return predict(caller, name, selector, checked, ({ body, packedRows }) => {
    const rows = body.instances !== undefined
    return {
      outputs: (held) => outputNames(held),
      format: () => (rows ? 'tf-serving-rows' : 'tf-serving-columns'),
      async feeds(held, feeds) {
        const signature = held.lease.model.signature
        const limits = requestLimits(config, held.target)
        const plan = rows
          ? rowFeeds(signature, packedRows ?? body.instances!, limits)
          : columnarFeeds(signature, body.inputs)
        const { transforms } = preparedOf(held.target, held.lease.model)
        for (const [spec, [value, where]] of plan)
          feeds[spec.name] = await jsonFeed(spec, transforms.get(spec.name), value, where, limits, config, name)
      },
      async answer(_held, outputs, names) {
        const result = await predictionsJSON(names, outputs, rows)
        return rows ? { predictions: result } : { outputs: result }
      },
    }
  })
}
