import { beforeEach, describe, expect, it } from 'vitest'
import { call, post } from './support/helpers'
import { resetIsolate } from '../src/isolate'

beforeEach(() => {
  resetIsolate()
})

describe('the pages', () => {
  it('serves the try-it page at /', async () => {
    const res = await call('/')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(res.headers.get('x-request-id')).toBeTruthy()
    const html = await res.text()
    expect(html).toContain('<canvas id="pad"')
    expect(html).toContain('/ui/try.js')
  })

  it('serves the docs page and Swagger UI from the Worker, nothing from a CDN', async () => {
    const html = await (await call('/docs')).text()
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!)
    expect(urls).toEqual(['/ui/vendor/swagger-ui.css', '/ui/vendor/swagger-ui-bundle.js', '/ui/docs.js'])
    for (const url of urls) expect((await call(url)).status, url).toBe(200)
    expect((await call('/ui/vendor/swagger-ui-bundle.js')).headers.get('content-type')).toMatch(/javascript/)
  })

  it('keeps model files private: /ui/ reaches only the page folder', async () => {
    for (const path of [
      '/ui/../iris/1/model.json',
      '/ui/%2e%2e/iris/1/model.json',
      '/ui/.hidden',
      '/iris/1/model.json',
      '/_ui/index.html',
      '/_index.json',
    ]) {
      const res = await call(path)
      expect(res.status, path).toBe(404)
      expect(await res.json(), path).toHaveProperty('error')
    }
  })
})

describe('POST /v2/repository/index', () => {
  it('lists every served version, READY once loaded in this isolate', async () => {
    const before = await (await post('/v2/repository/index', {})).json<Array<Record<string, string>>>()
    expect(before).toContainEqual({
      name: 'iris',
      version: '1',
      state: 'UNAVAILABLE',
      reason: expect.stringContaining('not loaded'),
    })
    expect(before.map((e) => e.name)).toContain('digits')
    await call('/v2/models/iris/ready')
    // No body at all, and an empty one with Content-Length: 0 (what a browser's fetch sends), are both an empty request.
    expect(
      (await call('/v2/repository/index', { method: 'POST', body: '', headers: { 'content-length': '0' } })).status,
    ).toBe(200)
    const after = await (await call('/v2/repository/index', { method: 'POST' })).json<Array<Record<string, string>>>()
    expect(after).toContainEqual({ name: 'iris', version: '1', state: 'READY' })
  })

  it('lists only loaded versions with ready: true', async () => {
    await call('/v2/models/iris/ready')
    expect(await (await post('/v2/repository/index', { ready: true })).json()).toEqual([
      { name: 'iris', version: '1', state: 'READY' },
    ])
  })

  it('answers client mistakes as the other routes do', async () => {
    expect((await post('/v2/repository/index', { ready: 'yes' })).status).toBe(400)
    expect((await post('/v2/repository/index', '{')).status).toBe(400)
    expect((await post('/v2/repository/index', '{}', { 'content-type': 'text/xml' })).status).toBe(415)
    const get = await call('/v2/repository/index')
    expect(get.status).toBe(405)
    expect(get.headers.get('allow')).toBe('POST')
  })
})
