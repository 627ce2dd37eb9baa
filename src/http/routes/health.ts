/** @module http/routes/health — liveness and readiness, at the Open Inference Protocol's paths. */
import { Hono } from 'hono'
import { ApiError } from '../../core/errors'
import { isolate } from '../../isolate'
import { routeDocs } from '../openapi'
import { waitUntilOf } from '../common'
import type { AppEnv } from '../common'

export const health = new Hono<AppEnv>()
  // Live: the isolate answers. Nothing else is checked, so a slow model load never fails it.
  .get('/v2/health/live', routeDocs.live, (c) => c.json({ live: true }))
  // Ready: the tf.js backend is up and the model repository can be read, so a predict can be served.
  // Models load lazily, on first use, so readiness does not wait for any of them.
  .get('/v2/health/ready', routeDocs.ready, async (c) => {
    try {
      return c.json({ ready: true, ...(await isolate().ready(c.env, waitUntilOf(c))) })
    } catch (error) {
      throw new ApiError(503, `not ready: ${(error as Error).message}`, { 'Retry-After': '5' })
    }
  })
