/**
 * @module http/middleware/cors — CORS, off unless the `CORS_ORIGINS` var names who may call.
 * A model endpoint is an API, not a page: browsers on other origins get nothing by default.
 */
import type { MiddlewareHandler } from 'hono'
import { cors as honoCors } from 'hono/cors'
import type { StringVars } from '../../core/config'
import type { AppEnv } from '../common'

/** Response headers a browser client may read: the cache outcome, the version and the timings. */
const EXPOSED = [
  'X-Model-Cache',
  'X-Model-Version',
  'X-Prediction-Cache',
  'Server-Timing',
  'X-Request-Id',
  'Retry-After',
]

function forOrigins(value: string): MiddlewareHandler {
  const list = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  return honoCors({
    origin: list.includes('*') ? '*' : list,
    // Authorization is left out on purpose: the admin API is not for browsers on other origins.
    allowHeaders: ['Content-Type', 'Inference-Header-Content-Length'],
    allowMethods: ['GET', 'POST'],
    exposeHeaders: EXPOSED,
    maxAge: 600,
  })
}

/** Applies CORS when `CORS_ORIGINS` is set, and lets browsers read Server-Timing from the allowed origins. */
export function cors(): MiddlewareHandler<AppEnv> {
  // The hono/cors middleware of the last CORS_ORIGINS seen: in production every request of an
  // isolate has the same vars, so it is built once.
  let last: { value: string; middleware: MiddlewareHandler } | undefined
  return async function cors(c, next) {
    const value = (c.env as StringVars).CORS_ORIGINS?.trim()
    if (!value) return next()
    if (last?.value !== value) last = { value, middleware: forOrigins(value) }
    // A preflight is answered by hono/cors itself, with a response of its own.
    const preflight = await last.middleware(c, next)
    const res = preflight ?? c.res
    const allowed = res.headers.get('Access-Control-Allow-Origin')
    if (allowed) res.headers.set('Timing-Allow-Origin', allowed)
    return preflight ?? undefined
  }
}
