/** @module http/middleware/access-log — a structured log line per request (all, or those refused or failed), with its id, model and timings. */
import type { MiddlewareHandler } from 'hono'
import type { StringVars } from '../../core/config'
import { log } from '../../core/log'
import { pathOf } from '../common'
import type { AppEnv } from '../common'

/** Which requests get an access-log line: `ACCESS_LOG` (docs/operations.md#logs). */
export type AccessLog = 'all' | 'errors' | 'off'
const MODES: readonly string[] = ['all', 'errors', 'off']

/**
 * `ACCESS_LOG` from the vars: `errors` when unset — a line for each request answered 4xx or 5xx only,
 * as TF Serving and Triton log no line per request by default: Workers' own invocation logs and the
 * Analytics Engine data points (when bound) already record every request, and a `console.log` per
 * request costs each one CPU time (the largest cost of a no-op request, docs/hand-written-floor.md).
 * A value not listed is a deployment mistake: it throws (a 500), as readConfig does.
 */
export function accessLogMode(env: object): AccessLog {
  const value = (env as StringVars).ACCESS_LOG
  if (value === undefined || value === '') return 'errors'
  if (!MODES.includes(value))
    throw new Error(`invalid configuration in vars: ACCESS_LOG '${value}' is not one of ${MODES.join(', ')}`)
  return value as AccessLog
}

/**
 * Logs `{"event": "request", requestId, clientRequestId, method, path, status, ms, model, version,
 * cache, timing}` after each response `ACCESS_LOG` asks for; `clientRequestId` only when the client sent `X-Request-Id`. The model fields come from what the route answered with, so a request
 * that never reached a model logs none.
 */
export function accessLog(): MiddlewareHandler<AppEnv> {
  return async function accessLog(c, next) {
    const started = Date.now()
    const mode = accessLogMode(c.env)
    await next()
    if (mode === 'off' || (mode === 'errors' && c.res.status < 400)) return
    const headers = c.res.headers
    log(c.res.status >= 500 ? 'error' : 'info', 'request', {
      requestId: c.get('requestId'),
      clientRequestId: c.get('clientRequestId'),
      method: c.req.method,
      path: pathOf(c.req.url),
      status: c.res.status,
      ms: Date.now() - started,
      model: c.get('model'),
      version: headers.get('x-model-version') ?? undefined,
      cache: headers.get('x-model-cache') ?? undefined,
      timing: headers.get('server-timing') ?? undefined,
    })
  }
}
