/** The isolate state: one object for everything an isolate keeps, and what a changed env means for it. */
import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it } from 'vitest'
import { DEFAULTS } from '../src/core/config'
import { isolate, resetIsolate } from '../src/isolate'
import { call, fakeClock, post, SETOSA } from './support/helpers'

const DIGIT = { instances: [Array.from({ length: 28 }, () => Array.from({ length: 28 }, () => [0]))] }

beforeEach(() => {
  resetIsolate()
})

describe('the isolate state', () => {
  it('is one object, created on first use, that every entry point shares', async () => {
    expect(isolate()).toBe(isolate())
    expect((await post('/v1/models/iris:predict', { instances: [SETOSA] })).status).toBe(200)
    // The route's load shows in the same object the admin API and /metrics read.
    expect(
      isolate()
        .status(env)
        .models.map((m) => m.key),
    ).toEqual(['iris/1'])
    expect(await (await call('/metrics')).text()).toMatch(/warmserve_cache_loads_total 1\n/)
  })

  it('starts over on reset, keeping the tf.js backend', async () => {
    const before = isolate()
    expect((await post('/v1/models/iris:predict', { instances: [SETOSA] })).status).toBe(200)
    const after = resetIsolate()
    // As booleans: a failing toBe would print the isolate, its wasm heap and all.
    expect(after !== before, 'a new isolate').toBe(true)
    expect(after.backend === before.backend, 'the same backend').toBe(true)
    expect(after.status(env).models).toEqual([])
  })
})

describe('a changed env', () => {
  it('applies a smaller CACHE_BUDGET_BYTES from the next load on, evicting what no longer fits', async () => {
    expect((await post('/v1/models/digits:predict', DIGIT)).status).toBe(200)
    // A budget of what digits holds at rest: iris fits it alone, not beside digits.
    const digitsBytes = isolate().status(env).residentBytes
    const tight = { ...env, CACHE_BUDGET_BYTES: String(digitsBytes) } as Env
    // Nothing changes until the state is used with the new vars …
    expect(isolate().status(env).budgetBytes).toBe(DEFAULTS.CACHE_BUDGET_BYTES)
    // … then the next load admits iris within the new budget: digits, idle, is evicted.
    expect((await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, tight)).status).toBe(200)
    const status = isolate().status(tight)
    expect(status.budgetBytes).toBe(digitsBytes)
    expect(status.models.map((m) => m.key)).toEqual(['iris/1'])
    expect(status.counters.evictions).toBe(1)
    expect(await (await call('/metrics', undefined, tight)).text()).toMatch(
      new RegExp(`warmserve_cache_budget_bytes ${digitsBytes}\\n`),
    )
  })

  it('applies MAX_MODELS_LOADED and the backoff to what comes after', async () => {
    const clock = fakeClock()
    resetIsolate({ now: clock.now })
    const one = { ...env, MAX_MODELS_LOADED: '1' } as Env
    expect((await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, one)).status).toBe(200)
    expect((await post('/v1/models/digits:predict', DIGIT, {}, one)).status).toBe(200)
    expect(
      isolate()
        .status(one)
        .models.map((m) => m.key),
    ).toEqual(['digits/1'])

    // A failure under LOAD_BACKOFF_BASE_MS=5000 waits 5 s, not the default 1 s.
    const slow = { ...env, LOAD_BACKOFF_BASE_MS: '5000', STORE_READ_TIMEOUT_MS: '1' } as Env
    const broken = {
      ...slow,
      ASSETS: {
        fetch: (input: RequestInfo) =>
          String(input).endsWith('.bin') ? Promise.reject(new Error('down')) : env.ASSETS.fetch(input),
      },
    } as unknown as Env
    const failed = await post('/v1/models/iris/versions/1:predict', { instances: [SETOSA] }, {}, broken)
    expect(failed.status).toBe(503)
    expect(failed.headers.get('retry-after')).toBe('5')
  })

  it('changes the backend a load uses (TF_BACKEND)', async () => {
    const cpu = { ...env, TF_BACKEND: 'cpu' } as Env
    const ready = await (await call('/v2/health/ready', undefined, cpu)).json<{ backend: string }>()
    expect(ready.backend).toBe('cpu')
    const wasm = await (await call('/v2/health/ready')).json<{ backend: string }>()
    expect(wasm.backend).toBe('wasm')
  })
})
