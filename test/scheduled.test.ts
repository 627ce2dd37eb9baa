import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { tf } from '../src/runtime/tf'
import { isolateOnFakeClock, post, runCron, SETOSA } from './support/helpers'
import { isolate, resetIsolate } from '../src/isolate'

// The isolate state's clock: a model's idle time passes when a test says so.
const clock = isolateOnFakeClock()

describe('scheduled handler', () => {
  it('drops a model idle longer than the TTL and frees its tensors', async () => {
    await post('/v1/models/iris:predict', { instances: [SETOSA] }) // build the backend's own state first
    resetIsolate({ now: clock.now })
    const before = tf.memory()
    expect((await post('/v1/models/iris:predict', { instances: [SETOSA] })).status).toBe(200)
    expect(tf.memory().numTensors).toBeGreaterThan(before.numTensors)

    clock.advance(1100)
    await runCron({ ...env, MODEL_IDLE_TTL_SECONDS: '1' } as Env)
    expect(isolate().cache.list()).toEqual([])
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
      ASSETS: {
        fetch: (input: RequestInfo | URL, init?: RequestInit) => (
          String(input).endsWith('/_index.json') && reads++,
          env.ASSETS.fetch(input, init)
        ),
      },
    } as unknown as Env
    await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, counting)
    expect(reads).toBe(1)
    await runCron(counting)
    expect(reads).toBe(2)
  })
})
