/** @module protocols/schemas — request bodies, validated with zod before anything touches a model. */
import { z } from 'zod'
import { DATATYPES } from './datatypes'
import { badRequest, quote } from '../core/errors'

/**
 * TF Serving's predict request: row format (`instances`) or columnar (`inputs`), never both.
 * @see https://www.tensorflow.org/tfx/serving/api_rest#predict_api
 */
export const PredictRequest = z
  .object({
    signature_name: z.string().optional(),
    instances: z
      .array(z.unknown(), { error: "'instances' must be a list with one entry per row" })
      .min(1, "'instances' is empty: send at least one row")
      .optional(),
    inputs: z.unknown().optional(),
  })
  .refine((body) => (body.instances === undefined) !== (body.inputs === undefined), {
    error: "send exactly one of 'instances' (row format) or 'inputs' (columnar format)",
  })

export type PredictRequest = z.infer<typeof PredictRequest>

/** One input tensor of an Open Inference Protocol request. */
export const RequestInput = z.object({
  name: z.string().min(1),
  shape: z.array(z.int().nonnegative(), { error: 'shape must be a list of non-negative integers' }),
  datatype: z.enum(DATATYPES, { error: `datatype must be one of ${DATATYPES.join(', ')}` }),
  parameters: z.looseObject({ binary_data_size: z.int().nonnegative().optional() }).optional(),
  data: z.unknown().optional(),
})

/**
 * The Open Inference Protocol's inference request body.
 * @see https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md#inference-request-json-object
 */
export const InferRequest = z.object({
  id: z.string().optional(),
  parameters: z.looseObject({ binary_data_output: z.boolean().optional() }).optional(),
  inputs: z.array(RequestInput).min(1, 'inputs is empty: send one entry per model input'),
  outputs: z
    .array(
      z.object({
        name: z.string().min(1),
        parameters: z.looseObject({ binary_data: z.boolean().optional() }).optional(),
      }),
    )
    // Each entry is answered with the whole output: a name repeated would multiply the response
    // without bound (5,000 copies of a 64-row output made 64 MB), so it is refused, not merged.
    .superRefine((outputs, ctx) => {
      const seen = new Set<string>()
      outputs.forEach(({ name }, i) => {
        if (seen.has(name))
          ctx.addIssue({
            code: 'custom',
            path: [i, 'name'],
            message: `output ${quote(name)} is asked for twice; name each output once`,
          })
        seen.add(name)
      })
    })
    .optional(),
})

export type InferRequest = z.infer<typeof InferRequest>

/** Triton's repository index request (its model repository extension): `ready` lists only loaded models. */
export const RepositoryIndexRequest = z.object({ ready: z.boolean().optional() })

/** Parses `value` with `schema`, turning the first problem into a 400 that names its place in the body. */
export function parseBody<T>(schema: z.ZodType<T>, value: unknown): T {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badRequest(
      `request body must be a JSON object, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`,
    )
  }
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]!
  const path = issue.path.length > 0 ? `'${issue.path.join('.')}': ` : ''
  throw badRequest(`${path}${issue.message}`)
}
