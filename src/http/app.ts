/** @module http/app — the Hono app: middleware, the protocol routes, and the one error handler. */
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { ApiError, ClientGoneError } from '../core/errors'
import { log } from '../core/log'
import { accessLog } from './middleware/access-log'
import { analytics } from './middleware/analytics'
import { cors } from './middleware/cors'
import { releaseBodies } from './middleware/release-body'
import { metrics as countRequests } from './middleware/count-requests'
import { requestId } from './middleware/request-id'
import { openApiDocument, routeDocs } from './openapi'
import { admin } from './routes/admin'
import type { AppEnv } from './common'
import { health } from './routes/health'
import { metrics } from './routes/prometheus'
import { pages } from './routes/pages'
import { tfServing } from './routes/tf-serving'
import { v2 } from './routes/v2'

export const app = new Hono<AppEnv>()
  // First, so that it frees the body's buffers after every other middleware is done with the request.
  .use(releaseBodies())
  .use(requestId())
  .use(accessLog())
  .use(countRequests())
  .use(analytics())
  .use(cors())
  .route('/', health)
  .route('/', tfServing)
  .route('/', v2)
  .route('/', admin)
  .route('/', metrics)
  .route('/', pages)

// The document describes the routes above, read from the app itself, so it is added once they are all in.
app.get('/openapi.json', routeDocs.openapi, async (c) => c.json(await openApiDocument(app)))

app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${new URL(c.req.url).pathname}` }, 404))

app.onError((error, c) => {
  const id = c.get('requestId')
  if (error instanceof ClientGoneError) {
    // Nobody reads this answer; the status is for the access log and /metrics, apart from 5xx.
    log('info', 'request.aborted', {
      requestId: id,
      status: error.status,
      model: c.get('model'),
      reason: error.message,
    })
    return c.json({ error: error.message }, error.status)
  }
  if (error instanceof ApiError) {
    if (error.status >= 500)
      log('error', 'request.failed', { requestId: id, status: error.status, error: error.message })
    const res = error.getResponse()
    res.headers.set('X-Request-Id', id)
    return res
  }
  if (error instanceof HTTPException) return c.json({ error: error.message }, error.status)
  // Anything else is a fault of ours: log it whole, tell the client only that it happened.
  log('error', 'request.crashed', { requestId: id, error: error.message, stack: error.stack })
  return c.json({ error: `internal error (request ${id})` }, 500)
})

export type App = typeof app
