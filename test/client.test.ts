import { env } from 'cloudflare:workers'
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { hc } from 'hono/client'
import { describe, expect, it } from 'vitest'
import type { App } from '../src/http/app'
import worker from '../src/index'

// The typed client of the README, calling the Worker's fetch handler in place of the network.
const client = hc<App>('http://warmserve.test', {
  fetch: async (input: RequestInfo | URL, init?: RequestInit) => {
    const ctx = createExecutionContext()
    const res = await worker.fetch(new Request(input, init), env, ctx)
    await waitOnExecutionContext(ctx)
    return res
  },
})

describe('hc<App>', () => {
  it('calls TF Serving predict through the :predict path parameter', async () => {
    const res = await client.v1.models[':target'].$post(
      { param: { target: 'iris:predict' } },
      { init: { body: JSON.stringify({ instances: [[5.1, 3.5, 1.4, 0.2]] }) } },
    )
    expect(res.status).toBe(200)
    const body = (await res.json()) as { predictions: number[][] }
    expect(body.predictions[0]![0]).toBeGreaterThan(0.9)
  })

  it('calls v2 model metadata and health with typed paths', async () => {
    const live = await client.v2.health.live.$get()
    expect(await live.json()).toEqual({ live: true })
    const meta = await client.v2.models[':name'].$get({ param: { name: 'iris' } })
    expect(meta.status).toBe(200)
    expect(await meta.json()).toMatchObject({
      name: 'iris',
      inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, 4] }],
    })
  })

  it('calls v2 infer', async () => {
    const res = await client.v2.models[':name'].infer.$post(
      { param: { name: 'iris' } },
      {
        init: {
          body: JSON.stringify({
            inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }],
          }),
          headers: { 'content-type': 'application/json' },
        },
      },
    )
    expect(res.status).toBe(200)
    expect(res.headers.get('x-model-version')).toBe('1')
  })
})
