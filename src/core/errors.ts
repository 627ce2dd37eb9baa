/** @module core/errors — the one HTTP error type and the JSON error shape every route uses. */
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

/** Seconds a client waits on a config.json fault: fixing one takes a publish or a deploy, not a moment. */
export const CONFIG_FAULT_RETRY_SECONDS = 60

/**
 * A model's config.json says something its model or repository contradicts (it names an input,
 * output or version the model lacks, an image shape it cannot fill): the server's fault, and the
 * model is unavailable until config.json is fixed — 503 with `Retry-After`, the one answer for all
 * of them. `problem` follows `{model}/config.json: `.
 */
export function configFault(model: string, problem: string): ModelUnavailableError {
  return new ModelUnavailableError(`${model}/config.json: ${problem}`, CONFIG_FAULT_RETRY_SECONDS)
}

/** The config.json fault of naming an input or output the model does not have (`key`: where it is named). */
export function missingFromModel(
  model: string,
  key: string,
  named: string,
  kind: 'input' | 'output',
  known: readonly string[],
): ModelUnavailableError {
  return configFault(
    model,
    `${key} names '${named}', which the model does not have; its ${kind}s are ${known.map((n) => `'${n}'`).join(', ')}`,
  )
}

/**
 * The client went away before its answer: it closed the connection (the request's signal aborted,
 * its body stream broke) or the call that asked was cancelled. Nginx's 499 "client closed request":
 * nobody receives it, but the logs (`request.aborted`) and `/metrics` count it apart from 5xx, so
 * a client that leaves cannot raise the server's error rate.
 */
export class ClientGoneError extends ApiError {
  constructor(message = 'the client closed the connection before its response was ready', cause?: unknown) {
    super(499 as ContentfulStatusCode, message, {}, cause)
  }
}

/**
 * Characters of a client's string that a message shows. A message names a client's value and
 * never serializes it whole: a body may hold 8 MB in one string or nest millions of levels, and
 * describing it must cost no more than the few characters kept.
 */
const SHOWN_CHARS = 40

/** Quotes a client-chosen name for a message, cut short: `'features'`, `'xxxx…' (4000000 characters)`. */
export function quote(text: string): string {
  return text.length <= SHOWN_CHARS ? `'${text}'` : `'${text.slice(0, SHOWN_CHARS)}…' (${text.length} characters)`
}

/** A JSON object (not an array, not null): what a client's value must be to be read by key. */
export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

/** Names a client's JSON value for a message in bounded work: `null`, `an array`, `the string "NaN"`, `number 3`. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return 'an object'
  if (typeof value === 'string') {
    // Cut before serializing: JSON.stringify of the whole string would cost its full length.
    return value.length <= SHOWN_CHARS
      ? `the string ${JSON.stringify(value)}`
      : `the string ${JSON.stringify(value.slice(0, SHOWN_CHARS))}… (${value.length} characters)`
  }
  return `${typeof value} ${String(value)}`
}
