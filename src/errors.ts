/** @module errors — the one HTTP error type and the JSON error shape every route uses. */
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'

/**
 * A client mistake or a server fault with a message meant for the caller.
 * TF Serving and the Open Inference Protocol both answer errors as `{"error": "…"}`.
 */
export class ApiError extends HTTPException {
  readonly headers: Record<string, string>

  constructor(status: ContentfulStatusCode, message: string, headers: Record<string, string> = {}, cause?: unknown) {
    super(status, { message, cause })
    this.headers = headers
  }

  override getResponse(): Response {
    return Response.json({ error: this.message }, { status: this.status, headers: this.headers })
  }
}

export const badRequest = (message: string) => new ApiError(400, message)
export const notFound = (message: string) => new ApiError(404, message)

/** A model could not be loaded; the caller may retry after `retryAfterSeconds`. */
export class ModelUnavailableError extends ApiError {
  constructor(message: string, retryAfterSeconds: number, cause?: unknown) {
    super(503, message, { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterSeconds))) }, cause)
  }
}

/** Builds an error message lazily, in tf.js's `assert(cond, () => msg)` style. */
export function check(condition: boolean, message: () => string): asserts condition {
  if (!condition) throw badRequest(message())
}
