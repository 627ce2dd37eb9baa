// End to end through workerd (the deploy bundle in Miniflare): a second Worker (test/e2e/support/caller/)
// calls warmserve's `Models` entrypoint through a service binding, beside HTTP clients, with the
// prediction cache on. The server: the shared fixture server (test/e2e/support/fixture-server.ts),
// whose front Worker is the caller.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { ROOT, sharedFixtureServer } from './support/servers'
import type { SharedServer } from './support/servers'

const SETOSA = [5.1, 3.5, 1.4, 0.2]
const PHOTO = readFileSync(join(ROOT, 'test/fixtures/models/_images/chelsea.jpg'))

let server: SharedServer

beforeAll(async () => {
  server = await sharedFixtureServer()
})

type Outcome = { value?: any; error?: { message: string; status?: number; isError: boolean }; ms: number }

/** `env.MODELS[method](...args)` in the caller Worker; typed arrays as `{typed, values}`. */
const rpc = async (method: string, ...args: unknown[]): Promise<Outcome> =>
  (
    await fetch(`${server.url}/call`, { method: 'POST', body: JSON.stringify({ method, args }) })
  ).json() as Promise<Outcome>

/** `env.MODELS.run(model, {image})` in the caller Worker. */
const classifyRpc = async (model: string, image: Uint8Array, nocache = false): Promise<Outcome> =>
  (
    await fetch(`${server.url}/classify/${model}${nocache ? '?nocache' : ''}`, { method: 'POST', body: image })
  ).json() as Promise<Outcome>

const classifyHttp = (model: string, image: Uint8Array, headers: Record<string, string> = {}) =>
  fetch(`${server.url}/v1/models/${model}:classify`, {
    method: 'POST',
    body: image,
    headers: { 'content-type': 'image/jpeg', ...headers },
  })

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

describe('Models through workerd', () => {
  it('answers run, infer, metadata and list from another Worker as the HTTP API does', async () => {
    const http = await (
      await fetch(`${server.url}/v1/models/iris:predict`, {
        method: 'POST',
        body: JSON.stringify({ instances: [SETOSA] }),
      })
    ).json()
    expect((await rpc('run', 'iris', { instances: [SETOSA] })).value).toEqual(http)
    const inferred = await rpc('infer', 'iris', {
      inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 4], data: { typed: 'Float32Array', values: SETOSA } }],
    })
    expect(inferred.value.outputs[0]).toMatchObject({
      name: expect.any(String),
      shape: [1, 3],
      data: { typed: 'Float32Array', values: expect.any(Array) },
    })
    expect((await rpc('metadata', 'cache-emotion')).value).toMatchObject({
      name: 'cache-emotion',
      inputs: [{ datatype: 'BYTES' }],
    })
    expect((await rpc('list')).value.map((e: { name: string }) => e.name)).toEqual(
      expect.arrayContaining(['iris', 'digits', 'cache-digits', 'cache-emotion']),
    )
    const missing = await rpc('run', 'no-such-model', { instances: [SETOSA] })
    const missingHttp = await fetch(`${server.url}/v1/models/no-such-model:predict`, {
      method: 'POST',
      body: JSON.stringify({ instances: [SETOSA] }),
    })
    expect(missing.error).toEqual({
      message: ((await missingHttp.json()) as { error: string }).error,
      status: missingHttp.status,
      isError: true,
    })
  })

  it('shares one prediction cache between HTTP and RPC callers, and measures a hit against a miss', async () => {
    // The photo goes through JPEG decoding, resizing and the conv net on a miss; a hit skips the net.
    const first = await classifyHttp('cache-emotion', PHOTO, { 'cache-control': 'no-cache' })
    expect(first.headers.get('X-Prediction-Cache')).toBe('miss')
    const answer = await first.json()
    const viaRpc = await classifyRpc('cache-emotion', PHOTO)
    expect(viaRpc.value).toEqual(answer)
    const hit = await classifyHttp('cache-emotion', PHOTO)
    expect([hit.headers.get('X-Prediction-Cache'), await hit.json()]).toEqual(['hit', answer])

    // Concurrent HTTP and RPC callers of one model: one answer.
    const together = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        i % 2
          ? classifyRpc('cache-emotion', PHOTO).then((o) => o.value)
          : classifyHttp('cache-emotion', PHOTO).then((r) => r.json()),
      ),
    )
    for (const result of together) expect(result).toEqual(answer)

    const rounds = 10
    const timed = { httpMiss: [] as number[], httpHit: [] as number[], rpcMiss: [] as number[], rpcHit: [] as number[] }
    for (let i = 0; i < rounds; i++) {
      let started = performance.now()
      expect(
        (await classifyHttp('cache-emotion', PHOTO, { 'cache-control': 'no-cache' })).headers.get('X-Prediction-Cache'),
      ).toBe('miss')
      timed.httpMiss.push(performance.now() - started)
      started = performance.now()
      expect((await classifyHttp('cache-emotion', PHOTO)).headers.get('X-Prediction-Cache')).toBe('hit')
      timed.httpHit.push(performance.now() - started)
      timed.rpcMiss.push((await classifyRpc('cache-emotion', PHOTO, true)).ms)
      timed.rpcHit.push((await classifyRpc('cache-emotion', PHOTO)).ms)
    }
    const medians = Object.fromEntries(Object.entries(timed).map(([k, v]) => [k, Number(median(v).toFixed(2))]))
    console.log(`cache-emotion (${PHOTO.length}-byte JPEG), median ms of ${rounds}: ${JSON.stringify(medians)}`)

    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    expect(
      Number(metrics.match(/^warmserve_prediction_cache_hits_total\{model="cache-emotion"\} (\d+)$/m)?.[1]),
    ).toBeGreaterThanOrEqual(2 * rounds + 2)
  })
})
