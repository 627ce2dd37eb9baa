/** @module http/middleware/count-requests — counts each answered request for `/metrics`, beside the access log. */
import type { MiddlewareHandler } from 'hono'
import { isolate } from '../../isolate'
import type { AppEnv } from '../common'

/**
 * Records the status, the model and version that served the request (none if it never reached a
 * model) and the inference time, after the response is built. Errors are counted too: by the time
 * this runs, Hono has turned a thrown error into its response.
 */
export function metrics(): MiddlewareHandler<AppEnv> {
  return async function metrics(c, next) {
    await next()
    isolate().metrics.recordRequest(
      c.get('model'),
      c.res.headers.get('x-model-version') ?? undefined,
      c.res.status,
      c.get('inferMs'),
    )
  }
}
