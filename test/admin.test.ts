import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it } from 'vitest'
import { tf } from '../src/runtime/tf'
import { call, post, SETOSA } from './support/helpers'
import { isolate, resetIsolate } from '../src/isolate'

const TOKEN = 's3cret-token'
const enabled = { ...env, ADMIN_TOKEN: TOKEN } as Env
const auth = (token = TOKEN) => ({ Authorization: `Bearer ${token}` })
const admin = (path: string, init: RequestInit = {}, bindings = enabled) => call(path, init, bindings)

beforeEach(() => {
  resetIsolate()
})

describe('admin API authentication', () => {
  it('is absent (404) when ADMIN_TOKEN is not set, whatever the request carries', async () => {
    for (const path of ['/admin/cache', '/admin/models/iris/reload']) {
      const res = await call(path, { method: path.endsWith('reload') ? 'POST' : 'GET', headers: auth() })
      expect(res.status).toBe(404)
      expect(await res.json()).toEqual({ error: expect.stringMatching(/^no route for/) })
    }
  })

  it.each([
    ['no Authorization header', {}],
    ['a wrong token', auth('s3cret-tokeN')],
    ['a token of another length', auth('s3cret')],
    ['a prefix of the token', auth(TOKEN.slice(0, -1))],
    ['another scheme', { Authorization: `Basic ${TOKEN}` }],
    ['an empty bearer', { Authorization: 'Bearer ' }],
  ])('answers 401 to %s', async (_case, headers) => {
    const res = await admin('/admin/cache', { headers })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/)
    expect(await res.json()).toEqual({ error: 'the admin API needs Authorization: Bearer <ADMIN_TOKEN>' })
  })

  it('lets the right token in', async () => {
    expect((await admin('/admin/cache', { headers: auth() })).status).toBe(200)
    expect((await admin('/admin/cache', { headers: { authorization: `bearer ${TOKEN}` } })).status).toBe(200)
  })
})

describe('admin API', () => {
  it("shows this isolate's cache: versions, leases, bytes, counters, memory", async () => {
    await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, enabled)
    const body = await (await admin('/admin/cache', { headers: auth() })).json<any>()
    expect(body.models).toEqual([
      expect.objectContaining({ key: 'iris/1', state: 'AVAILABLE', leases: 0, bytes: expect.any(Number) }),
    ])
    expect(body.counters).toMatchObject({ misses: 1, loads: 1 })
    expect(body.residentBytes).toBe(body.models[0].bytes)
    expect(body.memory).toEqual({ numTensors: tf.memory().numTensors, numBytes: tf.memory().numBytes })
    expect(body.pointer).toMatchObject({ etag: null })
  })

  it('unloads a model: every version, or one; in-flight requests finish first', async () => {
    await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, enabled)
    const cache = isolate().cache
    const held = await isolate().lease(enabled, 'iris')
    const res = await admin('/admin/models/iris/unload', { method: 'POST', headers: auth() })
    expect(await res.json()).toEqual({ model: 'iris', unloaded: ['iris/1'] })
    expect(cache.list()).toEqual([expect.objectContaining({ key: 'iris/1', state: 'RETIRED', leases: 1 })])
    held.lease.release()
    expect(cache.list()).toEqual([])

    const again = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, enabled)
    expect(again.headers.get('x-model-cache')).toBe('miss')
    const one = await admin('/admin/models/iris/unload?version=1', { method: 'POST', headers: auth() })
    expect(await one.json()).toEqual({ model: 'iris', unloaded: ['iris/1'] })
    const none = await admin('/admin/models/iris/unload', { method: 'POST', headers: auth() })
    expect(await none.json()).toEqual({ model: 'iris', unloaded: [] })
    expect((await admin('/admin/models/nope/unload', { method: 'POST', headers: auth() })).status).toBe(404)
  })

  it('reloads a model: a fresh build beside the serving one, then a switch', async () => {
    await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, enabled)
    const cache = isolate().cache
    const held = await isolate().lease(enabled, 'iris')
    const res = await admin('/admin/models/iris/reload', { method: 'POST', headers: auth() })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({
      model: 'iris',
      version: '1',
      source: 'assets',
      resident: { key: 'iris/1', state: 'AVAILABLE' },
    })
    expect(cache.list().map((r) => [r.key, r.state, r.leases])).toEqual([
      ['iris/1', 'AVAILABLE', 0],
      ['iris/1', 'RETIRED', 1],
    ])
    expect(cache.counters.reloads).toBe(1)
    held.lease.release()
    expect(cache.list().map((r) => r.state)).toEqual(['AVAILABLE'])
    const after = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, enabled)
    expect(after.headers.get('x-model-cache')).toBe('hit')
    expect((await admin('/admin/models/nope/reload', { method: 'POST', headers: auth() })).status).toBe(404)
  })

  it('answers errors as {"error": …}', async () => {
    const res = await admin('/admin/models/iris/unload?version=x', { method: 'POST', headers: auth() })
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({ error: "version 'x' is not a positive integer" })
  })
})
