/**
 * @module cron — the cron handler: the edge's stand-in for a lifespan shutdown hook, and the
 * publishing half of refresh across isolates. Everything it does is the isolate's `maintain`
 * (isolate.ts): drop idle models, re-read the index, validate new R2 versions and publish the
 * pointer. It reaches only the isolate it runs in; docs/hot-updates.md ("How it works") says how the
 * other isolates follow.
 */
import { isolate } from './isolate'

export const scheduled: ExportedHandlerScheduledHandler<Env> = (_controller, env, ctx) => {
  const state = isolate()
  // The loads and unloads of the run (idle drops, validation builds) go to Analytics Engine, if bound.
  ctx.waitUntil(state.maintain(env).finally(() => state.analytics.flush(env)))
}
