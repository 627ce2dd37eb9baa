/**
 * @module protocols/text/bytes — texts as the Open Inference Protocol sends them: a BYTES input of
 * UTF-8 strings (in JSON, strings as Triton and KServe take them; in the binary extension,
 * length-prefixed elements), and the text-fed inputs such an input fills.
 */
import type { z } from 'zod'
import type { Config } from '../../core/config'
import { badRequest, describeValue } from '../../core/errors'
import type { ModelLease } from '../../cache/lease'
import { bytesElements, checkBatch } from '../encoded'
import { unpack } from '../json-tensors'
import type { InferRequest, RequestInput } from '../schemas'
import type { RequestLimits } from '../tensors'

/**
 * The text-fed inputs a request leaves out, each with the text-fed input given as BYTES that fills
 * it (the first one sharing its tokenizer): a text model takes its texts once, as one BYTES input.
 */
export function textSiblings(held: ModelLease, body: InferRequest): Map<string, string> {
  const declared = held.target.config.inputs ?? {}
  const given = new Set(body.inputs.map((i) => i.name))
  const filled = new Map<string, string>()
  for (const spec of held.lease.model.signature.inputs) {
    const tokenizer = declared[spec.name]?.text?.tokenizer
    if (given.has(spec.name) || tokenizer === undefined) continue
    const from = body.inputs.find((i) => i.datatype === 'BYTES' && declared[i.name]?.text?.tokenizer === tokenizer)
    if (from) filled.set(spec.name, from.name)
  }
  return filled
}

/** A BYTES input's texts: in JSON, strings (UTF-8 text, as Triton and KServe take BYTES); in binary, length-prefixed elements. */
export function textElements(
  input: z.infer<typeof RequestInput>,
  raw: Uint8Array | undefined,
  where: string,
  limits: RequestLimits,
  config: Config,
): Uint8Array[] {
  if (raw && input.data !== undefined) throw badRequest(`${where}: send data or binary_data_size, not both`)
  if (input.shape.length !== 1)
    throw badRequest(`${where}: BYTES of texts take shape [n], one element per text; got [${input.shape.join(', ')}]`)
  checkBatch(input.shape[0] ?? 0, where, limits)
  // Each text is held to MAX_TEXT_BYTES by the transform, which says so in a text's words.
  if (raw) return bytesElements(input.shape, undefined, raw, where, config.MAX_BODY_BYTES)
  const data = unpack(input.data)
  const flat = Array.isArray(data) && data.length === 1 && Array.isArray(data[0]) ? (data[0] as unknown[]) : data
  if (!Array.isArray(flat)) throw badRequest(`${where}: data must be a list of ${input.shape[0]} texts`)
  if (flat.length !== input.shape[0])
    throw badRequest(`${where}: shape [${input.shape[0]}] but data has ${flat.length} elements`)
  const utf8 = new TextEncoder()
  return flat.map((text, i) => {
    if (typeof text !== 'string')
      throw badRequest(`${where} data[${i}]: a text is a string, got ${describeValue(text)}`)
    return utf8.encode(text)
  })
}
