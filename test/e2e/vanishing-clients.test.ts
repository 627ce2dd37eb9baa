/**
 * Clients that leave mid-request, against a real workerd (the deploy bundle in Miniflare; issue 24,
 * finding 5): raw TCP clients send the headers and part of a body, wait until traffic control has
 * given them their slots and queue places, and close. Every slot and queue place must come back (the
 * `warmserve_traffic_slots` gauge reads 0), the next legitimate requests must get 200 through HTTP
 * and through the `Models` service binding, and each client that left is counted as 499, not 5xx.
 *
 * Its own server, not the shared one (started by the global setup, OWN_SERVERS): on a server with
 * the leak, the model would answer 429 for good and every other file using it would fail.
 */
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { beforeAll, describe, expect, it } from 'vitest'
import { get, metricSum, post, SETOSA } from './support/http'
import { ownServer } from './support/servers'
import type { SharedServer } from './support/servers'

let server: SharedServer | undefined

beforeAll(async () => {
  // Its repository: test/e2e/support/models.ts writeLeakRepository.
  server = await ownServer('vanishing-clients')
})

/** One metric's value summed over the series whose labels include `labels`. */
const metric = (name: string, labels: Record<string, string>) => metricSum(server!.url, name, labels)

/** Polls `read` until it returns `want`, for at most `ms`; returns what it read last. */
async function until<T>(read: () => Promise<T>, want: T, ms: number): Promise<T> {
  const deadline = Date.now() + ms
  let value = await read()
  while (value !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100))
    value = await read()
  }
  return value
}

/** A client that sends the headers of a 4 KiB JSON body and its first bytes, then nothing. */
function halfRequest(path: string): Promise<Socket> {
  const { port } = server!
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{"instances": [[5.1, `,
      )
      resolve(socket)
    })
    socket.on('error', () => {}) // the server may reset it once it is closed
    socket.once('error', reject)
  })
}

const slots = (scope: 'model' | 'isolate', model: string, state: 'in_flight' | 'queued') => () =>
  metric('warmserve_traffic_slots', { scope, model, state })

/**
 * Sends `count` half requests to `model`, waits until they hold `inFlight` slots and `queued` places
 * at `scope`, then closes them all; returns the check that every slot and place came back.
 */
async function vanish(model: string, count: number, scope: 'model' | 'isolate', inFlight: number, queued: number) {
  const sockets = await Promise.all(Array.from({ length: count }, () => halfRequest(`/v1/models/${model}:predict`)))
  const gaugeModel = scope === 'model' ? model : ''
  expect(await until(slots(scope, gaugeModel, 'in_flight'), inFlight, 30_000)).toBe(inFlight)
  expect(await until(slots(scope, gaugeModel, 'queued'), queued, 30_000)).toBe(queued)
  for (const socket of sockets) socket.destroy()
  return async () => {
    // Every slot and queue place has come back.
    expect(await until(slots(scope, gaugeModel, 'in_flight'), 0, 15_000)).toBe(0)
    expect(await until(slots(scope, gaugeModel, 'queued'), 0, 15_000)).toBe(0)
  }
}

/**
 * Legitimate requests after the clients left. Until the server has seen every one of them go, a
 * request may get 429 (the limits are full of requests that are ending); within a bound it gets 200,
 * and never a 5xx. Then every slot is back, and a full house of requests is served at once, over
 * HTTP and through the service binding.
 */
async function served(model: string, allBack: () => Promise<void>, width: number) {
  const predict = () => post(`${server!.url}/v1/models/${model}:predict`, { instances: [SETOSA] })
  const seen: number[] = []
  const deadline = Date.now() + 20_000
  while (seen.at(-1) !== 200 && Date.now() < deadline) {
    seen.push((await predict()).status)
    if (seen.at(-1) === 429) await new Promise((r) => setTimeout(r, 200))
  }
  expect(seen.filter((s) => s !== 429)).toEqual([200])
  await allBack()
  const http = await Promise.all(Array.from({ length: width }, predict))
  expect(http.map((r) => r.status)).toEqual(Array.from({ length: width }, () => 200))
  const rpc = (await (
    await fetch(`${server!.url}/call`, {
      method: 'POST',
      body: JSON.stringify({ method: 'run', args: [model, { instances: [SETOSA] }] }),
    })
  ).json()) as { value?: unknown; error?: unknown }
  expect(rpc.error).toBeUndefined()
  expect(rpc.value).toEqual(http[0]!.json)
}

describe('clients that leave mid-body', () => {
  // The model, how many clients leave, where the limits are, and the slots and queue places they fill there.
  it.each([
    [
      "free a model's max_concurrent slots and max_queue places; they are counted as 499, not 5xx",
      'leak-limited',
      4,
      'model',
      2,
      2,
    ],
    ["free the isolate's MAX_CONCURRENT slots and MAX_QUEUE places", 'leak-open', 6, 'isolate', 3, 3],
  ] as const)('%s', async (_title, model, count, scope, inFlight, queued) => {
    expect((await post(`${server!.url}/v1/models/${model}:predict`, { instances: [SETOSA] })).status).toBe(200)
    await served(model, await vanish(model, count, scope, inFlight, queued), count)
    expect(await until(() => metric('warmserve_requests_total', { model, status: '499' }), count, 10_000)).toBe(count)
    expect(await metric('warmserve_requests_total', { status: '500' })).toBe(0)
  })
})
