/** @module schemas — request bodies, validated with zod before anything touches a model. */
import { z } from 'zod'
import { badRequest } from './errors'

/**
 * TF Serving's predict request: row format (`instances`) or columnar (`inputs`), never both.
 * @see https://www.tensorflow.org/tfx/serving/api_rest#predict_api
 */
export const PredictRequest = z
  .object({
    signature_name: z.string().optional(),
    instances: z.array(z.unknown(), { error: "'instances' must be a list with one entry per row" }).min(1, "'instances' is empty: send at least one row").optional(),
    inputs: z.unknown().optional(),
  })
  .refine((body) => (body.instances === undefined) !== (body.inputs === undefined), {
    error: "send exactly one of 'instances' (row format) or 'inputs' (columnar format)",
  })

export type PredictRequest = z.infer<typeof PredictRequest>

/** Parses `value` with `schema`, turning the first problem into a 400 that names its place in the body. */
export function parseBody<T>(schema: z.ZodType<T>, value: unknown): T {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badRequest(`request body must be a JSON object, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`)
  }
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]!
  const path = issue.path.length > 0 ? `'${issue.path.join('.')}': ` : ''
  throw badRequest(`${path}${issue.message}`)
}
