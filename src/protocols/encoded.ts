/**
 * @module protocols/encoded — encoded elements in the protocols' JSON: TF Serving's `{"b64": …}`
 * and the Open Inference Protocol's BYTES, handed to an input's transform (protocols/transforms.ts).
 */
import type { Config } from '../core/config'
import { ApiError, badRequest, describeValue, isObject } from '../core/errors'
import type { TensorSpec } from '../runtime/signature'
import type { tf } from '../runtime/tf'
import type { RequestLimits } from './tensors'
import { tensorFromJSON } from './tensors'
import type { InputTransform } from './transforms'

/** TF Serving's binary value: an object whose only key is `b64`, holding base64. */
export const isB64 = (value: unknown): value is { b64: unknown } =>
  isObject(value) && Object.keys(value).length === 1 && Object.hasOwn(value, 'b64')

// Standard base64 (RFC 4648 §4), padded or not, as TF Serving and Triton's clients send it.
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/** Decodes base64 text: 400 if it is not base64, 413 past MAX_IMAGE_BYTES (checked before decoding). */
export function base64Bytes(text: unknown, where: string, maxBytes: number): Uint8Array {
  if (typeof text !== 'string') throw badRequest(`${where}: expected base64 text, got ${describeValue(text)}`)
  if (Math.floor((text.length * 3) / 4) - 2 > maxBytes) {
    throw new ApiError(413, `${where}: the base64 holds more than the limit of ${maxBytes} bytes (MAX_IMAGE_BYTES)`)
  }
  let binary: string
  try {
    if (!BASE64.test(text)) throw new Error()
    binary = atob(text)
  } catch {
    throw badRequest(`${where}: invalid base64 (standard alphabet A–Z a–z 0–9 + /, '=' padding)`)
  }
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

/** Whether a JSON value is, or is a list of, TF Serving binary values. */
const holdsB64 = (value: unknown) => isB64(value) || (Array.isArray(value) && isB64(value[0]))

/** The 400 for encoded data sent to an input that takes numbers. */
export const noTransform = (spec: TensorSpec, model: string, what: string) =>
  badRequest(
    `input '${spec.name}' of model '${model}' has no image preprocessing (inputs.${spec.name}.image in its config.json), so it takes ${spec.dtype} numbers, not ${what}`,
  )

/** Refuses a batch of encoded elements past the row limit, before any is decoded. */
export function checkBatch(count: number, where: string, limits: RequestLimits): void {
  if (count === 0) throw badRequest(`${where}: no elements; a request needs at least one row`)
  if (count > limits.maxBatch)
    throw badRequest(`${where}: ${count} elements, more than the limit of ${limits.maxBatch} (${limits.batchRule})`)
}

/**
 * One input's tensor from its JSON value in a TF Serving request: `{"b64": …}` values (one, or one
 * per row) go through the input's transform; numbers are a tensor as always.
 */
export async function jsonFeed(
  spec: TensorSpec,
  transform: InputTransform | undefined,
  value: unknown,
  where: string,
  limits: RequestLimits,
  config: Config,
  model: string,
): Promise<tf.Tensor> {
  if (!holdsB64(value)) return tensorFromJSON(spec, value, where, limits, model)
  if (!transform) throw noTransform(spec, model, 'b64')
  const values = Array.isArray(value) ? value : [value]
  checkBatch(values.length, where, limits)
  // Row i's place: `instances[*]['image']` → `instances[2]['image']`, `instances` → `instances[2]`.
  const at = (i: number) =>
    !Array.isArray(value) ? where : where.includes('[*]') ? where.replace('[*]', `[${i}]`) : `${where}[${i}]`
  const elements = values.map((v, i) => {
    if (!isB64(v)) throw badRequest(`${at(i)}: expected {"b64": …} like the first row, got ${describeValue(v)}`)
    return base64Bytes(v.b64, `${at(i)}.b64`, config.MAX_IMAGE_BYTES)
  })
  return transform.tensor(elements, at, config, limits)
}

/**
 * The elements of an Open Inference Protocol BYTES input, shape `[n]`: in JSON, n base64 strings;
 * in the binary extension, Triton's layout, each element preceded by its 4-byte little-endian length.
 */
export function bytesElements(
  shape: number[],
  data: unknown,
  raw: Uint8Array | undefined,
  where: string,
  maxBytes: number,
): Uint8Array[] {
  if (shape.length !== 1)
    throw badRequest(
      `${where}: BYTES of encoded images take shape [n], one element per image; got [${shape.join(', ')}]`,
    )
  const count = shape[0]!
  if (raw) {
    const elements: Uint8Array[] = []
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength)
    let offset = 0
    while (offset < raw.byteLength) {
      if (offset + 4 > raw.byteLength)
        throw badRequest(
          `${where} binary data: element ${elements.length} has a length prefix cut short at byte ${offset}`,
        )
      const length = view.getUint32(offset, true)
      if (length > maxBytes)
        throw new ApiError(
          413,
          `${where}[${elements.length}]: the image is ${length} bytes, more than the limit of ${maxBytes} (MAX_IMAGE_BYTES)`,
        )
      if (offset + 4 + length > raw.byteLength) {
        throw badRequest(
          `${where} binary data: element ${elements.length} says ${length} bytes but ${raw.byteLength - offset - 4} remain`,
        )
      }
      elements.push(raw.subarray(offset + 4, offset + 4 + length))
      offset += 4 + length
    }
    if (elements.length !== count)
      throw badRequest(`${where}: shape [${count}] but the binary data holds ${elements.length} elements`)
    return elements
  }
  if (!Array.isArray(data)) throw badRequest(`${where}: data must be a list of ${count} base64 strings`)
  const flat = data.length === 1 && Array.isArray(data[0]) ? (data[0] as unknown[]) : data
  if (flat.length !== count) throw badRequest(`${where}: shape [${count}] but data has ${flat.length} elements`)
  return flat.map((text, i) => base64Bytes(text, `${where} data[${i}]`, maxBytes))
}
