/**
 * @module cron — the cron handler: the edge's stand-in for a lifespan shutdown hook, and the
 * publishing half of refresh across isolates.
 * Drops models idle longer than MODEL_IDLE_TTL_SECONDS (disposing their tensors), re-reads the
 * repository index, validates new versions in the R2 bucket and publishes the pointer, then applies
 * that pointer to this isolate too. Everything else it does reaches only the isolate it runs in;
 * see DESIGN.md on refresh.
 */
import { r2Models, readConfig } from './config'
import type { StringVars } from './config'
import { log } from './log'
import { loadVersion, modelCache, modelSources, modelStore, refreshModels } from './models'
import { publishVersions } from './repository/publish'
import type { PublishReport } from './repository/publish'
import { refreshRepository, repository } from './repository/repository'
import { configureBackend, tf } from './runtime/tf'

/** What one maintenance pass did. */
export interface MaintenanceReport {
  dropped: string[]
  models: number | null
  indexError?: string
  /** What the R2 pass did; absent when no bucket is bound or R2_MODELS is empty. */
  publish?: PublishReport
  publishError?: string
  numTensors: number
  numBytes: number
}

/** Validates new R2 versions and publishes the pointer, then follows it in this isolate. */
async function publish(env: Env): Promise<Pick<MaintenanceReport, 'publish' | 'publishError'>> {
  const config = readConfig(env)
  const allowed = r2Models(env)
  if (!env.MODELS || (allowed !== '*' && allowed.size === 0)) return {}
  try {
    const sources = modelSources(env)
    const base = await repository(modelStore(env)) // just re-read by maintain()
    const report = await publishVersions({ bucket: env.MODELS, base, allowed, cache: modelCache(config), load: (t) => loadVersion(sources, t), budgetBytes: config.CACHE_BUDGET_BYTES })
    await refreshModels(env, config)
    return { publish: report }
  } catch (error) {
    // R2 down or slow: nothing is published, every isolate keeps what it serves, the next run retries.
    return { publishError: (error as Error).message }
  }
}

/** One maintenance pass over this isolate's cache and index, and over the R2 bucket. */
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
  const published = indexError ? {} : await publish(env)
  const { numTensors, numBytes } = tf.memory()
  const report: MaintenanceReport = { dropped, models, ...published, numTensors, numBytes, ...(indexError ? { indexError } : {}) }
  log(indexError || published.publishError ? 'error' : 'info', 'cron.maintenance', { ...report })
  return report
}

export const scheduled: ExportedHandlerScheduledHandler<Env> = (_controller, env, ctx) => {
  // The cron validates candidates by building them, on the backend that serves them.
  configureBackend((env as StringVars).TF_BACKEND)
  ctx.waitUntil(maintain(env))
}
