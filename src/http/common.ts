/** @module http/common — path parameters and response headers shared by the protocol routes. */
import type { Context } from 'hono'
import { ApiError, badRequest, ClientGoneError, quote } from '../errors'
import { isolate } from '../isolate'
import type { ModelLease } from '../isolate'
import { withLease } from '../predict'
import type { Caller, Prediction } from '../predict'
import type { Selector } from '../repository/repository'
import type { Signature } from '../runtime/signature'

export type AppEnv = {
  Bindings: Env
  /**
   * `model`: the model a request was served by, and `inferMs`: its run time, for the access log and
   * metrics; `decodeMs`: the time a raw image body took to decode and preprocess, for Server-Timing.
   */
  Variables: { model?: string; inferMs?: number; decodeMs?: number }
}

/** Parses a `versions/{v}` path segment: a positive integer, as TF Serving's versions are. */
export function parseVersion(segment: string | undefined): number | undefined {
  if (segment === undefined) return undefined
  if (!/^[1-9][0-9]{0,15}$/.test(segment)) throw badRequest(`version '${segment}' is not a positive integer`)
  return Number(segment)
}

// Label names as TF Serving allows them (see version_labels in repository/repository.ts).
const LABEL = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/

/** Parses a `labels/{l}` path segment. */
export function parseLabel(segment: string): string {
  if (!LABEL.test(segment)) throw badRequest(`label '${segment}' is not a valid label (a letter, then letters, digits, '_' or '-')`)
  return segment
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

/** A handler for a path that exists but not for this method: 405 with the methods it allows. */
export const methodNotAllowed = (allow: string) => (c: Context) => {
  throw new ApiError(405, `${c.req.method} is not allowed on ${new URL(c.req.url).pathname}; use ${allow}`, { Allow: allow })
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
    signal: c.req.raw.signal,
  }
}

/**
 * The outputs a request gets: those it names, else the model's `default_outputs`, else all.
 * Naming an unknown output is the client's mistake (400); a config.json naming one is ours (500).
 */
export function outputNames({ target, lease }: ModelLease, requested?: string[]): string[] {
  const known = lease.model.signature.outputs.map((s) => s.name)
  const list = (names: string[]) => known.map((n) => `'${n}'`).join(', ')
  for (const name of requested ?? []) {
    if (!known.includes(name)) throw badRequest(`unknown output ${quote(name)}; the model's outputs are ${list(known)}`)
  }
  const defaults = target.config.default_outputs
  for (const name of defaults ?? []) {
    if (!known.includes(name)) {
      throw new ApiError(500, `${target.name}/config.json: default_outputs names '${name}', which the model does not have; its outputs are ${list(known)}`)
    }
  }
  return requested ?? defaults ?? known
}

/** Leases a model for the length of `use`, always releasing it. */
export function withModel<T>(c: Context<AppEnv>, name: string, selector: Selector, use: (held: ModelLease) => Promise<T>): Promise<T> {
  return withLease(callerOf(c), name, selector, use)
}

/**
 * Runs an inference request under the model's traffic control (src/traffic.ts: the version split,
 * the admission limits, the shadow run): routes it and takes its slots first, then `serve` reads the
 * body and predicts with a caller holding that slot — so a request reading its body is already
 * in flight — and the slots free when the response is ready. A 429 is counted under the model's name
 * (it exists: routing found it), and so is a 499 (its client left: src/errors.ts ClientGoneError).
 */
export async function withTrafficSlot<T>(c: Context<AppEnv>, name: string, selector: Selector, serve: (caller: Caller) => Promise<T>): Promise<T> {
  const caller = callerOf(c)
  try {
    const slot = await isolate().traffic.admit(c.env, name, selector, caller)
    try {
      return await serve({ ...caller, slot })
    } finally {
      slot.release()
    }
  } catch (error) {
    if (error instanceof ClientGoneError || (error instanceof ApiError && error.status === 429)) c.set('model', name)
    throw error
  }
}

/**
 * Checks the input names a request gives against the signature: none unknown, none given twice,
 * none missing. `where` prefixes the message (`instances[2]`), where the protocol has a place to name.
 */
export function checkInputNames(signature: Signature, given: string[], where?: string): void {
  const prefix = where === undefined ? '' : `${where}: `
  const known = new Set(signature.inputs.map((s) => s.name))
  const list = signature.inputs.map((s) => `'${s.name}'`).join(', ')
  const seen = new Set<string>()
  for (const name of given) {
    if (!known.has(name)) throw badRequest(`${prefix}unknown input ${quote(name)}; the model's inputs are ${list}`)
    if (seen.has(name)) throw badRequest(`${prefix}input ${quote(name)} is given twice`)
    seen.add(name)
  }
  const missing = signature.inputs.find((s) => !seen.has(s.name))
  if (missing) throw badRequest(`${prefix}missing input '${missing.name}'; the model's inputs are ${list}`)
}
