/** @module http/middleware/access-log — one structured log line per request, with its id, model and timings. */
import type { MiddlewareHandler } from 'hono'
import { log } from '../../core/log'
import { pathOf } from '../common'
import type { AppEnv } from '../common'

/**
 * Logs `{"event": "request", requestId, clientRequestId, method, path, status, ms, model, version,
 * cache, timing}` after each response; `clientRequestId` only when the client sent `X-Request-Id`. The model fields come from what the route answered with, so a request
 * that never reached a model logs none.
 */
export function accessLog(): MiddlewareHandler<AppEnv> {
  return async function accessLog(c, next) {
    const started = Date.now()
    await next()
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
