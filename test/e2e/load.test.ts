/**
 * Load: concurrency 64 against a real `wrangler dev` (the shared one, test/e2e/support/servers.ts) while the
 * cache is dropped and refreshed underneath (admin unloads of both models and cron runs, several a
 * second). Every valid request must succeed. The load runs for LOAD_SECONDS (default 3; 30 with
 * `npm run load`) and on until the cache has been dropped more than once a second of it: how many
 * drops fit into a time depends on the machine, so the test waits for them, up to a deadline.
 */
import autocannon from 'autocannon'
import { beforeAll, expect, it } from 'vitest'
import { bearer, get, post, SETOSA } from './support/http'
import { SHARED_ADMIN_TOKEN, sharedDevServer } from './support/servers'

const SECONDS = Number(process.env.LOAD_SECONDS ?? 3)
const CONNECTIONS = 64
/** The cache must be dropped underneath more than once per second of load (unloads > SECONDS). */
const MIN_UNLOADS = SECONDS + 1
/** The most the load may run past SECONDS while the churn catches up, before the test fails. */
const OVERRUN_S = 60
const digit = Array.from({ length: 28 }, (_, r) => Array.from({ length: 28 }, (_, c) => [((r * 28 + c) % 17) / 17]))

let url: string

beforeAll(async () => {
  url = (await sharedDevServer()).url
})

it(
  `serves ${CONNECTIONS} concurrent clients for ${SECONDS}s with 0 failures while models are dropped and reloaded`,
  { timeout: (SECONDS + OVERRUN_S + 90) * 1000 },
  async () => {
    const json = { 'content-type': 'application/json' }
    for (const model of ['iris', 'digits']) expect((await get(`${url}/v2/models/${model}/ready`)).status).toBe(200)

    const began = Date.now()
    let load!: autocannon.Instance
    let loading = true
    const result = new Promise<autocannon.Result>((resolve, reject) => {
      load = autocannon(
        {
          url,
          connections: CONNECTIONS,
          duration: SECONDS + OVERRUN_S,
          timeout: 30,
          requests: [
            {
              method: 'POST',
              path: '/v1/models/iris:predict',
              headers: json,
              body: JSON.stringify({ instances: [SETOSA] }),
            },
            {
              method: 'POST',
              path: '/v1/models/digits:predict',
              headers: json,
              body: JSON.stringify({ instances: [digit] }),
            },
            {
              method: 'POST',
              path: '/v2/models/iris/infer',
              headers: json,
              body: JSON.stringify({
                inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', data: [6.7, 3.0, 5.2, 2.3] }],
              }),
            },
          ],
        },
        (error, done) => (error ? reject(error) : resolve(done)),
      )
    }).finally(() => (loading = false))

    // Churn: unload one model, then the other, and fire the cron, while the load runs; then end the
    // load once it has run SECONDS and the cache has been dropped MIN_UNLOADS times.
    const churn = { unloads: 0, crons: 0, failures: [] as string[] }
    const churner = (async () => {
      for (let i = 0; loading; i++) {
        const model = i % 2 === 0 ? 'iris' : 'digits'
        const res = await post(`${url}/admin/models/${model}/unload`, {}, bearer(SHARED_ADMIN_TOKEN))
        if (res.status === 200) churn.unloads++
        else churn.failures.push(`unload ${model}: ${res.status} ${res.text}`)
        if (i % 4 === 3) {
          const cron = await fetch(`${url}/cdn-cgi/local/scheduled`, { signal: AbortSignal.timeout(60_000) })
          await cron.arrayBuffer()
          if (cron.ok) churn.crons++
          else churn.failures.push(`cron: ${cron.status}`)
        }
        if (Date.now() - began >= SECONDS * 1000 && churn.unloads >= MIN_UNLOADS) load.stop()
        await new Promise((r) => setTimeout(r, 200))
      }
    })()
    const done = await result
    await churner

    const summary = {
      seconds: done.duration,
      connections: CONNECTIONS,
      requests: done.requests.total,
      rps: done.requests.average,
      non2xx: done.non2xx,
      errors: done.errors,
      timeouts: done.timeouts,
      p50ms: done.latency.p50,
      p99ms: done.latency.p99,
      maxms: done.latency.max,
      unloads: churn.unloads,
      crons: churn.crons,
    }
    console.log(`load: ${JSON.stringify(summary)}`)
    expect(churn.failures).toEqual([])
    expect(churn.unloads).toBeGreaterThanOrEqual(MIN_UNLOADS) // the cache really was dropped underneath, repeatedly
    expect(done.requests.total).toBeGreaterThan(0)
    expect(done.errors).toBe(0)
    expect(done.timeouts).toBe(0)
    expect(done.non2xx).toBe(0)
  },
)
