import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { call, post, SETOSA } from './support/helpers'

const withCors = (origins: string) => ({ ...env, CORS_ORIGINS: origins }) as Env

describe('CORS', () => {
  it('is off unless CORS_ORIGINS is set', async () => {
    const res = await post('/v1/models/iris:predict', { instances: [SETOSA] }, { origin: 'https://elsewhere.example' })
    expect(res.status).toBe(200)
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
    const preflight = await call('/v1/models/iris:predict', {
      method: 'OPTIONS',
      headers: { origin: 'https://elsewhere.example', 'access-control-request-method': 'POST' },
    })
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull()
  })

  it('allows exactly the configured origins and exposes the model headers to them', async () => {
    const bindings = withCors('https://app.example, https://admin.example')
    const res = await post(
      '/v1/models/iris:predict',
      { instances: [SETOSA] },
      { origin: 'https://app.example' },
      bindings,
    )
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example')
    expect(res.headers.get('access-control-expose-headers')).toMatch(/X-Model-Cache.*Server-Timing/)
    expect(res.headers.get('timing-allow-origin')).toBe('https://app.example')
    const other = await post(
      '/v1/models/iris:predict',
      { instances: [SETOSA] },
      { origin: 'https://evil.example' },
      bindings,
    )
    expect(other.headers.get('access-control-allow-origin')).toBeNull()
  })

  it('answers preflight for predict, without allowing the Authorization header', async () => {
    const res = await call(
      '/v2/models/iris/infer',
      {
        method: 'OPTIONS',
        headers: {
          origin: 'https://app.example',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'content-type',
        },
      },
      withCors('*'),
    )
    expect(res.status).toBe(204)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    expect(res.headers.get('access-control-allow-methods')).toMatch(/POST/)
    expect(res.headers.get('access-control-allow-headers')).not.toMatch(/authorization/i)
  })
})
