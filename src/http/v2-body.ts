/**
 * @module http/v2-body — the Open Inference Protocol's bodies over HTTP: an inference request read as
 * JSON or with the binary tensor data extension (protocols/v2/binary.ts), and its answer written the
 * same way, each output as the request asks.
 * @see https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/binary_data_extension.md
 */
import type { Context } from 'hono'
import { readConfig } from '../core/config'
import { badRequest } from '../core/errors'
import type { Prediction } from '../predict'
import { readTensorJson, tensorText, V2_TENSORS } from '../protocols/json-tensors'
import { InferRequest, parseBody } from '../protocols/schemas'
import { splitBinary } from '../protocols/v2/binary'
import type { InferAnswer, InferInput } from '../protocols/v2/dataplane'
import { concatBytes, parseJson, readBytes, readJson } from './body'
import type { AppEnv } from './common'

export const HEADER_LENGTH = 'Inference-Header-Content-Length'

/** A request body: its JSON inference header, and the raw bytes after it when it has any. */
export interface InferBody {
  header: unknown
  binary?: Uint8Array
}

/** Reads an inference request, JSON or binary (when `Inference-Header-Content-Length` is set). */
export async function readInferBody(
  request: Request,
  maxBytes: number,
  readJson: () => Promise<unknown>,
  timeoutMs?: number,
): Promise<InferBody> {
  const declared = request.headers.get(HEADER_LENGTH)
  if (declared === null) return { header: await readJson() }
  const length = Number(declared)
  const bytes = await readBytes(request, maxBytes, Number.isSafeInteger(length) ? length : 0, timeoutMs)
  if (!/^\d+$/.test(declared.trim()) || length > bytes.byteLength) {
    throw badRequest(`${HEADER_LENGTH} is '${declared}' but the body has ${bytes.byteLength} bytes`)
  }
  return { header: parseJson(bytes.subarray(0, length), 'inference header'), binary: bytes.subarray(length) }
}

/** Reads and parses an inference request from an HTTP body, JSON or binary, within MAX_BODY_BYTES. */
export async function readInferRequest(c: Context<AppEnv>): Promise<InferInput> {
  const config = readConfig(c.env)
  const { header, binary } = await readInferBody(
    c.req.raw,
    config.MAX_BODY_BYTES,
    () =>
      readJson(
        c.req.raw,
        config.MAX_BODY_BYTES,
        (bytes) => readTensorJson(bytes, V2_TENSORS, config.MAX_TENSOR_ELEMENTS),
        config.BODY_READ_TIMEOUT_MS,
      ),
    config.BODY_READ_TIMEOUT_MS,
  )
  const body = parseBody(InferRequest, header)
  return {
    body,
    raws: splitBinary(
      body.inputs.map((i) => i.parameters?.binary_data_size),
      binary,
    ),
  }
}

/** Builds a binary response: the JSON header (a value, or its text), then each output's raw bytes, in order. */
export function binaryResponse(header: unknown, parts: Uint8Array[], headers: Headers): Response {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header))
  const body = concatBytes([json, ...parts])
  headers.set('Content-Type', 'application/octet-stream')
  headers.set(HEADER_LENGTH, String(json.byteLength))
  return new Response(body, { headers })
}

/** Writes an inference answer: JSON, or the binary extension's layout when the request asks for any output as binary. */
export function inferResponse(c: Context<AppEnv>, body: InferRequest, prediction: Prediction<InferAnswer>): Response {
  const binaryOut = (output: string) =>
    body.outputs?.find((r) => r.name === output)?.parameters?.binary_data ??
    body.parameters?.binary_data_output ??
    false
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
  return parts.length > 0
    ? binaryResponse(response, parts, new Headers(c.res.headers))
    : c.body(response, 200, { 'Content-Type': 'application/json' })
}
