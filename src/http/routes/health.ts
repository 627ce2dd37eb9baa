/** @module http/routes/health — liveness and readiness, at the Open Inference Protocol's paths. */
import { Hono } from 'hono'
import { ApiError } from '../../errors'
import { readConfig } from '../../config'
import { openRepository } from '../../models'
import { ensureBackend } from '../../runtime/tf'
import { backendBroken } from '../../runtime/wasm-guard'
import { spec } from '../openapi'
import { waitUntilOf } from '../common'
import type { AppEnv } from '../common'

export const health = new Hono<AppEnv>()
  // Live: the isolate answers. Nothing else is checked, so a slow model load never fails it.
  .get('/v2/health/live', spec.live, (c) => c.json({ live: true }))
  // Ready: the tf.js backend is up and the model repository can be read, so a predict can be served.
  // Models load lazily, on first use, so readiness does not wait for any of them.
  .get('/v2/health/ready', spec.ready, async (c) => {
    try {
      const [backend, repository] = await Promise.all([ensureBackend(), openRepository(c.env, readConfig(c.env), waitUntilOf(c))])
      const broken = backendBroken()
      if (broken) throw new Error(`the wasm backend failed: ${broken}`)
      return c.json({ ready: true, backend, models: repository.names().length })
    } catch (error) {
      throw new ApiError(503, `not ready: ${(error as Error).message}`, { 'Retry-After': '5' })
    }
  })
