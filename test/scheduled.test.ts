import { createExecutionContext, createScheduledController, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it } from 'vitest'
import worker from '../src/index'
import { readConfig } from '../src/config'
import { modelCache, resetModelCache } from '../src/models'
import { resetRepository } from '../src/repository/repository'
import { tf } from '../src/runtime/tf'
import { post } from './helpers'

const SETOSA = [5.1, 3.5, 1.4, 0.2]

async function runCron(bindings: Env) {
  const ctx = createExecutionContext()
  await worker.scheduled(createScheduledController({ cron: '*/5 * * * *', scheduledTime: Date.now() }), bindings, ctx)
  await waitOnExecutionContext(ctx)
}

beforeEach(() => {
  resetModelCache()
  resetRepository()
})

describe('scheduled handler', () => {
  it('drops a model idle longer than the TTL and frees its tensors', async () => {
    await post('/v1/models/iris:predict', { instances: [SETOSA] }) // build the backend's own state first
    resetModelCache()
    const before = tf.memory()
    expect((await post('/v1/models/iris:predict', { instances: [SETOSA] })).status).toBe(200)
    expect(tf.memory().numTensors).toBeGreaterThan(before.numTensors)

    await new Promise((r) => setTimeout(r, 1100))
    await runCron({ ...env, MODEL_IDLE_TTL_SECONDS: '1' } as Env)
    expect(modelCache(readConfig(env)).list()).toEqual([])
    expect(tf.memory().numTensors).toBe(before.numTensors)
    expect(tf.memory().numBytes).toBe(before.numBytes)

    const again = await post('/v1/models/iris:predict', { instances: [SETOSA] })
    expect(again.headers.get('x-model-cache')).toBe('miss')
  })

  it('keeps a model used within the TTL', async () => {
    await post('/v1/models/iris:predict', { instances: [SETOSA] })
    await runCron(env)
    const res = await post('/v1/models/iris:predict', { instances: [SETOSA] })
    expect(res.headers.get('x-model-cache')).toBe('hit')
  })

  it('re-reads the repository index', async () => {
    let reads = 0
    const counting = {
      ...env,
      ASSETS: { fetch: (input: RequestInfo | URL, init?: RequestInit) => (String(input).endsWith('/_index.json') && reads++, env.ASSETS.fetch(input, init)) },
    } as unknown as Env
    await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, counting)
    expect(reads).toBe(1)
    await runCron(counting)
    expect(reads).toBe(2)
  })
})
