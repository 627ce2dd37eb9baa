/** @module http/common — what every protocol's routes share: the request as a caller, the response's model headers. */
import type { Context, Hono, Schema } from 'hono'
import type { RequestRecord } from '../analytics/analytics'
import { ApiError, ClientGoneError } from '../core/errors'
import type { ModelLease } from '../cache/lease'
import type { Caller, Prediction } from '../predict'

export type AppEnv = {
  Bindings: Env
  /**
   * `model`: the model a request was served by, and `inferMs`: its run time, for the access log and
   * metrics; `decodeMs`: the time a raw image body took to decode and preprocess, for Server-Timing;
   * `record`: an inference request's analytics point, when the dataset is bound (middleware/analytics.ts).
   */
  Variables: { model?: string; inferMs?: number; decodeMs?: number; record?: RequestRecord }
}

/**
 * Background work for after the response (`ctx.waitUntil`), or `undefined` where there is no
 * execution context (`app.request` in a unit test).
 */
export function waitUntilOf(c: Context): ((promise: Promise<unknown>) => void) | undefined {
  try {
    const ctx = c.executionCtx
    return (promise) => ctx.waitUntil(promise)
  } catch {
    return undefined
  }
}

/**
 * The path of `url`, as `new URL(url).pathname` gives it, without parsing the whole URL: a Request's
 * `url` is already serialized by the URL parser, so its path runs from the first `/` after the host
 * to the query or fragment. (Hono's `c.req.path` would decode percent-escapes; the logs keep them.)
 */
export function pathOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('//') + 2)
  if (start < 0) return '/'
  let end = url.length
  for (const mark of ['?', '#']) {
    const at = url.indexOf(mark, start)
    if (at >= 0 && at < end) end = at
  }
  return url.slice(start, end)
}

/** A handler for a path that exists but not for this method: 405 with the methods it allows. */
export const methodNotAllowed = (allow: string) => (c: Context) => {
  throw new ApiError(405, `${c.req.method} is not allowed on ${new URL(c.req.url).pathname}; use ${allow}`, {
    Allow: allow,
  })
}

/**
 * Answers every other method on each path with 405 and its `Allow` (`{ '/v2': 'GET' }`): added after
 * a router's own routes, so they match first.
 */
export function refuseOtherMethods<S extends Schema, B extends string>(
  routes: Hono<AppEnv, S, B>,
  allowed: Record<string, string>,
): Hono<AppEnv, S, B> {
  for (const [path, allow] of Object.entries(allowed)) routes.all(path, methodNotAllowed(allow))
  return routes
}

/**
 * Adds the cache outcome, the version that answered, and Server-Timing (load wait, image decode,
 * inference). `inferMs` is absent when the prediction cache answered and the model did not run.
 */
export function setModelHeaders(c: Context, { target, lease }: ModelLease, inferMs?: number): void {
  c.set('model', target.name)
  if (inferMs !== undefined) c.set('inferMs', inferMs)
  c.header('X-Model-Cache', lease.outcome)
  c.header('X-Model-Version', String(target.version))
  const timings = [inferMs === undefined ? 'cache;desc="hit"' : `infer;dur=${inferMs}`]
  const decodeMs = c.get('decodeMs')
  if (decodeMs !== undefined) timings.unshift(`decode;dur=${decodeMs}`)
  if (lease.outcome !== 'hit') timings.unshift(`load;dur=${lease.waitedMs};desc="${lease.outcome}"`)
  c.header('Server-Timing', timings.join(', '))
}

/** The model headers of a prediction, and `X-Prediction-Cache: hit | miss` for a model with `response_cache`. */
export function setPredictionHeaders(c: Context, prediction: Prediction<unknown>): void {
  setModelHeaders(c, prediction.held, prediction.inferMs)
  if (prediction.cache) c.header('X-Prediction-Cache', prediction.cache)
}

/** An HTTP request as a caller of `predict`: its bindings, its background work, its host and `Cache-Control`. */
export function callerOf(c: Context<AppEnv>): Caller {
  return {
    env: c.env,
    waitUntil: waitUntilOf(c),
    host: new URL(c.req.url).hostname,
    noCache: /(^|[\s,])no-cache([\s,]|$)/i.test(c.req.header('cache-control') ?? ''),
    header: (name) => c.req.header(name),
    requestId: c.get('requestId'),
    record: c.get('record'),
    signal: c.req.raw.signal,
    body: { length: c.req.header('content-length'), type: c.req.header('content-type') },
  }
}

/**
 * Runs `serve` with the request as a caller (`callerOf`). A 429 from traffic control is counted
 * under the model's name in `/metrics` and the access log: routing found the model.
 */
export async function asCaller<T>(c: Context<AppEnv>, name: string, serve: (caller: Caller) => Promise<T>): Promise<T> {
  try {
    return await serve(callerOf(c))
  } catch (error) {
    // Counted under the model's name (it exists: routing found it): a 429, and a 499 (its client left).
    if (error instanceof ClientGoneError || (error instanceof ApiError && error.status === 429)) c.set('model', name)
    throw error
  }
}
