/**
 * @module scheduled — the cron handler: the edge's stand-in for a lifespan shutdown hook.
 * Drops models idle longer than MODEL_IDLE_TTL_SECONDS (disposing their tensors) and re-reads
 * the repository index. It only reaches the isolate it runs in; see DESIGN.md on refresh.
 */
import { readConfig } from './config'
import { log } from './log'
import { modelCache, modelStore } from './model/models'
import { refreshRepository } from './model/repository'
import { tf } from './model/tf'

/** What one maintenance pass did. */
export interface MaintenanceReport {
  dropped: string[]
  models: number | null
  indexError?: string
  numTensors: number
  numBytes: number
}

/** One maintenance pass over this isolate's cache and index. */
export async function maintain(env: Env): Promise<MaintenanceReport> {
  const config = readConfig(env)
  const dropped = modelCache(config).dropIdle(config.MODEL_IDLE_TTL_SECONDS * 1000)
  let models: number | null = null
  let indexError: string | undefined
  try {
    models = (await refreshRepository(modelStore(env))).names().length
  } catch (error) {
    indexError = (error as Error).message
  }
  const { numTensors, numBytes } = tf.memory()
  const report: MaintenanceReport = { dropped, models, numTensors, numBytes, ...(indexError ? { indexError } : {}) }
  log(indexError ? 'error' : 'info', 'cron.maintenance', { ...report })
  return report
}

export const scheduled: ExportedHandlerScheduledHandler<Env> = (_controller, env, ctx) => {
  ctx.waitUntil(maintain(env))
}
