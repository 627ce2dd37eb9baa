/**
 * @module http/middleware/cors — CORS, off unless the `CORS_ORIGINS` var names who may call.
 * A model endpoint is an API, not a page: browsers on other origins get nothing by default.
 */
import type { MiddlewareHandler } from 'hono'
import { cors as honoCors } from 'hono/cors'
import type { StringVars } from '../../config'
import type { AppEnv } from '../common'

/** Response headers a browser client may read: the cache outcome, the version and the timings. */
const EXPOSED = ['X-Model-Cache', 'X-Model-Version', 'Server-Timing', 'X-Request-Id', 'Retry-After']

// A memo, not state: one hono/cors middleware per distinct CORS_ORIGINS value, built on first use
// and the same for the isolate's life.
const built = new Map<string, MiddlewareHandler>()

function forOrigins(value: string): MiddlewareHandler {
  let middleware = built.get(value)
  if (!middleware) {
    const list = value.split(',').map((s) => s.trim()).filter(Boolean)
    middleware = honoCors({
      origin: list.includes('*') ? '*' : list,
      // Authorization is left out on purpose: the admin API is not for browsers on other origins.
      allowHeaders: ['Content-Type', 'Inference-Header-Content-Length'],
      allowMethods: ['GET', 'POST'],
      exposeHeaders: EXPOSED,
      maxAge: 600,
    })
    built.set(value, middleware)
  }
  return middleware
}

/** Applies CORS when `CORS_ORIGINS` is set, and lets browsers read Server-Timing from the allowed origins. */
export function cors(): MiddlewareHandler<AppEnv> {
  return async function cors(c, next) {
    const value = (c.env as StringVars).CORS_ORIGINS?.trim()
    if (!value) return next()
    // A preflight is answered by hono/cors itself, with a response of its own.
    const preflight = await forOrigins(value)(c, next)
    const res = preflight ?? c.res
    const allowed = res.headers.get('Access-Control-Allow-Origin')
    if (allowed) res.headers.set('Timing-Allow-Origin', allowed)
    return preflight ?? undefined
  }
}
