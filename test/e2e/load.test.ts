/**
 * Load: concurrency 64 against a real `wrangler dev` while the cache is dropped and refreshed
 * underneath (admin unloads of both models and cron runs, several a second). Every valid
 * request must succeed. `npm test` runs it for LOAD_SECONDS (default 5); `npm run load` for 30.
 */
import autocannon from 'autocannon'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startDevServer } from './dev-server'
import type { DevServer } from './dev-server'
import { get, post } from './http'

const SECONDS = Number(process.env.LOAD_SECONDS ?? 5)
const CONNECTIONS = 64
const TOKEN = 'load-test-admin-token'
const digit = Array.from({ length: 28 }, (_, r) => Array.from({ length: 28 }, (_, c) => [((r * 28 + c) % 17) / 17]))

let server: DevServer | undefined

beforeAll(async () => {
  server = await startDevServer({ vars: { ADMIN_TOKEN: TOKEN } })
})
afterAll(async () => {
  await server?.stop()
})

it(`serves ${CONNECTIONS} concurrent clients for ${SECONDS}s with 0 failures while models are dropped and reloaded`, { timeout: (SECONDS + 90) * 1000 }, async () => {
  const url = server!.url
  const json = { 'content-type': 'application/json' }
  for (const model of ['iris', 'digits']) expect((await get(`${url}/v2/models/${model}/ready`)).status).toBe(200)

  // Churn: unload one model, then the other, and fire the cron, until the load ends.
  let churning = true
  const churn = { unloads: 0, crons: 0, failures: [] as string[] }
  const churner = (async () => {
    for (let i = 0; churning; i++) {
      const model = i % 2 === 0 ? 'iris' : 'digits'
      const res = await post(`${url}/admin/models/${model}/unload`, {}, { authorization: `Bearer ${TOKEN}` })
      if (res.status === 200) churn.unloads++
      else churn.failures.push(`unload ${model}: ${res.status} ${res.text}`)
      if (i % 4 === 3) {
        const cron = await fetch(`${url}/cdn-cgi/local/scheduled`)
        await cron.arrayBuffer()
        if (cron.ok) churn.crons++
        else churn.failures.push(`cron: ${cron.status}`)
      }
      await new Promise((r) => setTimeout(r, 200))
    }
  })()

  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: SECONDS,
    timeout: 30,
    requests: [
      { method: 'POST', path: '/v1/models/iris:predict', headers: json, body: JSON.stringify({ instances: [[5.1, 3.5, 1.4, 0.2]] }) },
      { method: 'POST', path: '/v1/models/digits:predict', headers: json, body: JSON.stringify({ instances: [digit] }) },
      {
        method: 'POST',
        path: '/v2/models/iris/infer',
        headers: json,
        body: JSON.stringify({ inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', data: [6.7, 3.0, 5.2, 2.3] }] }),
      },
    ],
  })
  churning = false
  await churner

  const cache = await get<{ counters: { loads: number } }>(`${url}/admin/cache`).catch(() => undefined)
  const summary = {
    seconds: SECONDS,
    connections: CONNECTIONS,
    requests: result.requests.total,
    rps: result.requests.average,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    p50ms: result.latency.p50,
    p99ms: result.latency.p99,
    maxms: result.latency.max,
    unloads: churn.unloads,
    crons: churn.crons,
  }
  console.log(`load: ${JSON.stringify(summary)}`)
  void cache
  expect(churn.failures).toEqual([])
  expect(churn.unloads).toBeGreaterThan(SECONDS) // the cache really was dropped underneath, repeatedly
  expect(result.requests.total).toBeGreaterThan(0)
  expect(result.errors).toBe(0)
  expect(result.timeouts).toBe(0)
  expect(result.non2xx).toBe(0)
})
