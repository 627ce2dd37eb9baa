/**
 * Traffic control per model (src/traffic/traffic.ts): weighted and sticky splits, shadow runs, and admission
 * limits answering 429, through both protocols. The model lives in the R2 bucket: three versions of
 * iris whose output bias makes each answer its own class (v1 setosa, v2 versicolor, v3 virginica), so
 * a response shows which version made it; each test writes the config.json it needs and runs the cron.
 */
import { env } from 'cloudflare:workers'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { checkModelConfig } from '../src/repository/model-config'
import { isolate } from '../src/isolate'
import { tf } from '../src/runtime/tf'
import { InputCopies } from '../src/runtime/sub-batches'
import { Gate } from '../src/traffic/gate'
import type { Place } from '../src/traffic/gate'
import { fnv1a, pickWeighted } from '../src/traffic/traffic'
import { call, post, runCron, SETOSA } from './support/helpers'
import { irisWithBias, publish } from './support/r2-helpers'

type Outcome<T = any> = { value?: T; error?: { message: string; status?: number } }
// The service-binding entrypoint, called from the pool's other Worker (test/e2e/support/caller/index.js), as test/rpc.test.ts does.
const rpcCaller = (env as unknown as { RPC_CALLER: { call(method: string, ...args: unknown[]): Promise<Outcome> } })
  .RPC_CALLER

const NAME = 'traffic-iris'
const PREDICT = `/v1/models/${NAME}:predict`
const INFER = `/v2/models/${NAME}/infer`
const v2Body = { inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', data: SETOSA }] }

beforeAll(async () => {
  await publish(env.MODELS, NAME, 1, await irisWithBias([50, 0, 0]))
  await publish(env.MODELS, NAME, 2, await irisWithBias([0, 50, 0]))
  await publish(env.MODELS, NAME, 3, await irisWithBias([0, 0, 50]))
})

afterEach(() => {
  isolate().traffic.random = Math.random
  vi.restoreAllMocks()
})

/** Writes the model's config.json to the bucket and lets the cron publish it (this isolate follows at once). */
async function configure(config: unknown, bindings: Env = env) {
  await env.MODELS.put(`${NAME}/config.json`, JSON.stringify(config))
  await runCron(bindings)
}

/** The version that answered and the class it picked: each version answers its own class. */
async function answer(res: Response) {
  expect(res.status).toBe(200)
  const body = await res.json<{ predictions?: number[][]; outputs?: { data: number[] }[] }>()
  const row = body.predictions?.[0] ?? body.outputs![0]!.data
  return { version: res.headers.get('x-model-version'), top: row.indexOf(Math.max(...row)) }
}

async function scrape() {
  const families = new Map(parsePrometheusTextFormat(await (await call('/metrics')).text()).map((f) => [f.name, f]))
  return (name: string, labels: Record<string, string>) =>
    Number(
      families.get(name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value ??
        0,
    )
}

/** Draws that return `values` in turn: the weighted split and the shadow fraction without chance. */
const draws = (...values: number[]) => {
  let i = 0
  return () => values[i++ % values.length]!
}

describe('config.json', () => {
  it('takes the keys as the issue writes them, and refuses what could never route', () => {
    expect(
      checkModelConfig({
        traffic: { versions: { '1': 90, '2': 10 }, sticky_header: 'x-client-id' },
        shadow: { version: 3, fraction: 0.1 },
        max_concurrent: 4,
        max_queue: 0,
      }).ok,
    ).toBe(true)
    expect(
      checkModelConfig({
        version_labels: { stable: 1, canary: 2 },
        traffic: { versions: { stable: 9, canary: 1 } },
        shadow: { version: 'canary', fraction: 1 },
      }).ok,
    ).toBe(true)
    const refused = (config: unknown) => {
      const checked = checkModelConfig(config)
      if (checked.ok) throw new Error(`accepted ${JSON.stringify(config)}`)
      return checked.message
    }
    expect(refused({ traffic: { versions: { beta: 1 } } })).toBe(
      "'beta' is neither a version number nor one of version_labels at traffic.versions.beta",
    )
    expect(refused({ traffic: { versions: { '1': 0 } } })).toBe(
      'at least one weight must be above 0 at traffic.versions',
    )
    expect(refused({ shadow: { version: 2, fraction: 1.5 } })).toMatch(/at shadow\.fraction/)
    expect(refused({ max_queue: 3 })).toBe(
      'max_queue bounds the requests waiting for max_concurrent, which is not set at max_queue',
    )
    expect(refused({ traffic: { version: { '1': 1 } } })).toMatch(
      /unknown key "version" at traffic \(did you mean "versions"\?\)/,
    )
    expect(refused({ max_concurent: 1 })).toMatch(/did you mean "max_concurrent"/)
  })
})

describe('weighted split', () => {
  it('splits requests that name no version by weight, in both protocols; under explicit "any" a named version or label is served as named', async () => {
    await configure({ version_labels: { canary: 3 }, traffic: { versions: { '1': 50, canary: 50 }, explicit: 'any' } })
    isolate().traffic.random = draws(0.25, 0.75)
    expect(await answer(await post(PREDICT, { instances: [SETOSA] }))).toEqual({ version: '1', top: 0 })
    expect(await answer(await post(PREDICT, { instances: [SETOSA] }))).toEqual({ version: '3', top: 2 })
    expect(await answer(await post(INFER, v2Body))).toEqual({ version: '1', top: 0 })
    expect(await answer(await post(INFER, v2Body))).toEqual({ version: '3', top: 2 })
    expect(await answer(await post(`/v1/models/${NAME}/versions/2:predict`, { instances: [SETOSA] }))).toEqual({
      version: '2',
      top: 1,
    })
    expect(await answer(await post(`/v2/models/${NAME}/versions/2/infer`, v2Body))).toEqual({ version: '2', top: 1 })
    expect(await answer(await post(`/v1/models/${NAME}/labels/canary:predict`, { instances: [SETOSA] }))).toEqual({
      version: '3',
      top: 2,
    })
    const metric = await scrape()
    expect(metric('warmserve_traffic_total', { model: NAME, version: '1', rule: 'weighted' })).toBe(2)
    expect(metric('warmserve_traffic_total', { model: NAME, version: '3', rule: 'weighted' })).toBe(2)
    expect(metric('warmserve_traffic_total', { model: NAME, version: '2', rule: 'named' })).toBe(2)
  })

  it('draws at random without the sticky header: both versions of a 50/50 split serve', async () => {
    await configure({ traffic: { versions: { '1': 1, '2': 1 }, sticky_header: 'x-client-id' } })
    const seen = new Set<string | null>()
    for (let i = 0; i < 40 && seen.size < 2; i++)
      seen.add((await answer(await post(PREDICT, { instances: [SETOSA] }))).version)
    expect([...seen].sort()).toEqual(['1', '2'])
  })

  it('answers 503 naming the key when the split names a version the model does not serve', async () => {
    await configure({ traffic: { versions: { '1': 1, '9': 1 } } })
    isolate().traffic.random = draws(0.9)
    const res = await post(PREDICT, { instances: [SETOSA] })
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('60')
    expect((await res.json<{ error: string }>()).error).toBe(
      "traffic-iris/config.json: traffic.versions names '9', which is not served: model 'traffic-iris' has no version 9; versions: 1, 2, 3",
    )
  })

  it('picks by cumulative weight, skipping zero weights; FNV-1a is the published function', () => {
    const weights = [
      ['1', 90],
      ['2', 0],
      ['3', 10],
    ] as const
    expect([0, 0.5, 0.8999, 0.9, 0.99999].map((u) => pickWeighted(weights, u))).toEqual(['1', '1', '1', '3', '3'])
    // Test vectors of 32-bit FNV-1a (http://www.isthe.com/chongo/tech/comp/fnv/).
    expect([fnv1a(''), fnv1a('a'), fnv1a('foobar')]).toEqual([0x811c9dc5, 0xe40c292c, 0xbf9cf968])
  })
})

describe('sticky split', () => {
  it('gives one client id one version, over both protocols and RPC, and spreads 100 clients near the weights', async () => {
    await configure({ traffic: { versions: { '1': 50, '2': 50 }, sticky_header: 'x-client-id' } })
    const counts: Record<string, number> = {}
    for (let i = 0; i < 100; i++) {
      const id = { 'x-client-id': `client-${i}` }
      const first = await answer(await post(PREDICT, { instances: [SETOSA] }, id))
      if (i % 20 === 0) {
        // The same client again, through the other protocol and through RPC: the same version.
        expect(await answer(await post(INFER, v2Body, id))).toEqual(first)
        const viaRpc = await rpcCaller.call('run', NAME, { instances: [SETOSA] }, { client_id: `client-${i}` })
        expect(viaRpc.value.predictions[0].indexOf(Math.max(...viaRpc.value.predictions[0]))).toBe(first.top)
        expect(await answer(await post(PREDICT, { instances: [SETOSA] }, id))).toEqual(first)
      }
      counts[first.version!] = (counts[first.version!] ?? 0) + 1
    }
    expect(counts['1']! + counts['2']!).toBe(100)
    // The ids are fixed, so this split is too: FNV-1a puts 100 ids within these bounds (±4 standard deviations of chance).
    expect(counts['1']).toBeGreaterThanOrEqual(30)
    expect(counts['1']).toBeLessThanOrEqual(70)
    expect((await scrape())('warmserve_traffic_total', { model: NAME, version: '2', rule: 'sticky' })).toBeGreaterThan(
      0,
    )
  })
})

/** A POST whose body the test writes when it wants: the request is in flight while its body is unread. */
function heldRequest(path: string, bindings: Env = env) {
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>()
  const writer = writable.getWriter()
  const response = call(
    path,
    { method: 'POST', body: readable, headers: { 'content-type': 'application/json' }, duplex: 'half' } as RequestInit,
    bindings,
  )
  return {
    response,
    /** The client's side of the body breaks off, as when its connection is lost mid-body. */
    breakOff: () => {
      void writer.abort(new Error('connection lost'))
      return response
    },
    finish: () => {
      void writer.write(new TextEncoder().encode(JSON.stringify({ instances: [SETOSA] })))
      void writer.close()
      return response
    },
  }
}

/** Polls `check` on each turn of the event loop until it holds, for at most 5 s. */
async function until(check: () => boolean, what: string) {
  const deadline = Date.now() + 5_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 0))
  }
}

describe('admission limits', () => {
  it('counts a request in flight while its body is read: past max_concurrent and max_queue, 429 with Retry-After, in both protocols and over RPC', async () => {
    await configure({ max_concurrent: 1, max_queue: 0 })
    const gate = isolate().traffic.gate(NAME)
    const held = heldRequest(PREDICT)
    await until(() => gate.inFlight === 1, 'the held request to be admitted')
    expect((await rpcCaller.call('run', NAME, { instances: [SETOSA] })).error).toMatchObject({
      status: 429,
      message: expect.stringMatching(/^model 'traffic-iris' is at capacity/),
    })
    for (const refused of [await post(PREDICT, { instances: [SETOSA] }), await post(INFER, v2Body)]) {
      expect(refused.status).toBe(429)
      expect(refused.headers.get('retry-after')).toBe('1')
      expect(await refused.json()).toEqual({
        error:
          "model 'traffic-iris' is at capacity: 1 requests in flight and 0 waiting (max_concurrent and max_queue in its config.json); retry after 1 s",
      })
    }
    // Another model is not limited by this one's config, nor is this model's metadata (not an inference).
    expect((await post('/v1/models/iris:predict', { instances: [SETOSA] })).status).toBe(200)
    expect((await call(`/v1/models/${NAME}/versions/1/metadata`)).status).toBe(200)
    expect((await held.finish()).status).toBe(200)
    expect(gate.inFlight).toBe(0)
    expect((await post(PREDICT, { instances: [SETOSA] })).status).toBe(200)
    const metric = await scrape()
    expect(metric('warmserve_rejections_total', { model: NAME, reason: 'model' })).toBe(3)
    expect(metric('warmserve_requests_total', { model: NAME, status: '429' })).toBe(3)
  })

  it('serves waiting requests first come, first served, and refuses past the queue', async () => {
    await configure({ max_concurrent: 1, max_queue: 2 })
    const gate = isolate().traffic.gate(NAME)
    const order: string[] = []
    const first = heldRequest(PREDICT)
    void first.response.then(() => order.push('first'))
    await until(() => gate.inFlight === 1, 'the first request to be admitted')
    const waiting = ['second', 'third'].map((name, i) => {
      const held = heldRequest(PREDICT)
      void held.response.then(() => order.push(name))
      return { held, queued: i + 1 }
    })
    for (const { queued } of waiting) await until(() => gate.queued >= queued, `${queued} waiting`)
    expect((await post(PREDICT, { instances: [SETOSA] })).status).toBe(429)
    // The later request's body arrives first; it still waits its turn.
    void waiting[1]!.held.finish()
    void waiting[0]!.held.finish()
    await first.finish()
    await Promise.all(waiting.map((w) => w.held.response))
    expect(order).toEqual(['first', 'second', 'third'])
    expect([gate.inFlight, gate.queued]).toEqual([0, 0])
  })

  it('applies MAX_CONCURRENT and MAX_QUEUE to all models of the isolate together', async () => {
    const bindings = { ...env, MAX_CONCURRENT: '1', MAX_QUEUE: '0' } as Env
    await configure({}, bindings)
    const held = heldRequest(PREDICT, bindings)
    await until(() => isolate().traffic.isolateGate.inFlight === 1, 'the held request to be admitted')
    const refused = await post(
      '/v2/models/iris/infer',
      { inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', data: SETOSA }] },
      {},
      bindings,
    )
    expect(refused.status).toBe(429)
    expect(refused.headers.get('retry-after')).toBe('1')
    expect((await refused.json<{ error: string }>()).error).toBe(
      'this server is at capacity: 1 requests in flight and 0 waiting (MAX_CONCURRENT and MAX_QUEUE); retry after 1 s',
    )
    expect((await held.finish()).status).toBe(200)
    expect(
      (
        await post(
          '/v2/models/iris/infer',
          { inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', data: SETOSA }] },
          {},
          bindings,
        )
      ).status,
    ).toBe(200)
    expect((await scrape())('warmserve_rejections_total', { model: 'iris', reason: 'isolate' })).toBe(1)
  })

  it('frees the slot of a request whose body breaks off (499, counted apart from 5xx) and hands it to the next in line', async () => {
    await configure({ max_concurrent: 1, max_queue: 1 })
    const gate = isolate().traffic.gate(NAME)
    const lines: Record<string, unknown>[] = []
    vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(JSON.parse(line)))
    const leaving = heldRequest(PREDICT)
    await until(() => gate.inFlight === 1, 'the leaving request to be admitted')
    const next = heldRequest(PREDICT)
    await until(() => gate.queued === 1, 'the next request to wait')
    const gone = await leaving.breakOff()
    expect(gone.status).toBe(499)
    expect((await gone.json<{ error: string }>()).error).toMatch(/^the request body broke off while it was being read/)
    expect(lines.find((l) => l.event === 'request.aborted')).toMatchObject({ status: 499, model: NAME })
    expect((await next.finish()).status).toBe(200)
    expect([gate.inFlight, gate.queued]).toEqual([0, 0])
    const metric = await scrape()
    expect(metric('warmserve_requests_total', { model: NAME, status: '499' })).toBe(1)
    expect(metric('warmserve_traffic_slots', { scope: 'model', model: NAME, state: 'in_flight' })).toBe(0)
  })

  it('gives a body BODY_READ_TIMEOUT_MS to arrive: then 408, and the slot is free', async () => {
    const bindings = { ...env, BODY_READ_TIMEOUT_MS: '300' } as Env
    await configure({ max_concurrent: 1, max_queue: 0 }, bindings)
    const slow = heldRequest(PREDICT, bindings)
    const res = await slow.response
    expect(res.status).toBe(408)
    expect((await res.json<{ error: string }>()).error).toBe(
      'the request body did not arrive within 300 ms (BODY_READ_TIMEOUT_MS)',
    )
    expect(isolate().traffic.gate(NAME).inFlight).toBe(0)
    expect((await post(PREDICT, { instances: [SETOSA] }, {}, bindings)).status).toBe(200)
  })

  it('hands a slot to the longest waiter, and admits waiters at once when the limit is raised', async () => {
    const gate = new Gate(1, 1)
    const first = gate.enter() as Place
    expect(first.state).toBe('holding')
    const order: number[] = []
    void (gate.enter() as Place).ready.then(() => order.push(1))
    expect(gate.enter()).toBe(false)
    gate.configure(1, 3)
    void (gate.enter() as Place).ready.then(() => order.push(2))
    void (gate.enter() as Place).ready.then(() => order.push(3))
    first.leave()
    await Promise.resolve()
    expect(order).toEqual([1])
    gate.configure(3, 3)
    await Promise.resolve()
    expect(order).toEqual([1, 2, 3])
    expect([gate.inFlight, gate.queued]).toEqual([3, 0])
  })

  it('gives a slot back whatever state its place is in: a waiter that leaves is out of the line, a granted one frees its slot', async () => {
    const gate = new Gate(1, 2)
    const holder = gate.enter() as Place
    const quitter = gate.enter() as Place
    const next = gate.enter() as Place
    const reason = new Error('client gone')
    quitter.leave(reason)
    await expect(quitter.ready).rejects.toBe(reason)
    expect([gate.inFlight, gate.queued]).toEqual([1, 1])
    holder.leave()
    holder.leave() // idempotent: one slot freed, not two
    expect([next.state, gate.inFlight, gate.queued]).toEqual(['holding', 1, 0])
    // Granted, but its code never ran again (a cancelled request): leave() still frees the slot.
    next.leave()
    expect([gate.inFlight, gate.queued]).toEqual([0, 0])
  })
})

describe('REQUEST_MEMORY_BYTES', () => {
  /** A 1000-byte pool, all of it reserved by a request whose chunked body is held (MAX_BODY_BYTES, capped at the pool). */
  async function poolHeld() {
    const bindings = { ...env, REQUEST_MEMORY_BYTES: '1000' } as Env
    await configure({}, bindings)
    const memory = isolate().traffic.memory
    const held = heldRequest(PREDICT, bindings)
    await until(() => memory.used === 1000, 'the held request to reserve the pool')
    return { bindings, memory, held }
  }

  it('makes a request wait, not fail, while the bodies in flight hold the pool, and lets it in when they end', async () => {
    const { bindings, memory, held } = await poolHeld()
    // 3 × its 40-odd bytes of JSON: waits behind the held body, where it would have run at once.
    const small = post(PREDICT, { instances: [SETOSA] }, {}, bindings)
    await until(() => memory.queued === 1, 'the small request to wait for room')
    const metric = await scrape()
    expect(metric('warmserve_request_memory_waiting', {})).toBe(1)
    expect(metric('warmserve_request_memory_bytes', { state: 'reserved' })).toBe(1000)
    expect(metric('warmserve_request_memory_bytes', { state: 'limit' })).toBe(1000)
    expect((await held.finish()).status).toBe(200)
    expect((await small).status).toBe(200)
    expect([memory.used, memory.queued]).toEqual([0, 0])
    // Back to the default pool: small requests do not wait for each other.
    await configure({})
    const answers = await Promise.all(Array.from({ length: 50 }, () => post(PREDICT, { instances: [SETOSA] })))
    expect(answers.map((r) => r.status)).toEqual(Array(50).fill(200))
    expect(memory.size).toBe(32 * 1024 * 1024)
  })

  it('reserves for an HTTP body still to be read, from its Content-Length and type; nothing for a body already in memory (the service binding)', async () => {
    await configure({})
    const traffic = isolate().traffic
    const usedWhileServing = (request: Parameters<typeof traffic.serve>[3]) =>
      traffic.serve(
        env,
        NAME,
        {},
        request,
        async () => undefined,
        async () => traffic.memory.used,
      )
    expect(await usedWhileServing({ body: { length: '1000', type: 'application/json' } })).toBe(3000)
    expect(await usedWhileServing({ body: { length: '1000', type: 'image/jpeg' } })).toBe(2000)
    expect(await usedWhileServing({ header: () => 'client-7' })).toBe(0)
    expect(traffic.memory.used).toBe(0)
  })

  it('gives the room back when a waiting client leaves', async () => {
    const { bindings, memory, held } = await poolHeld()
    const client = new AbortController()
    const gone = call(
      PREDICT,
      { method: 'POST', body: JSON.stringify({ instances: [SETOSA] }), signal: client.signal },
      bindings,
    ).then(
      (r) => r.status,
      () => 'aborted',
    )
    await until(() => memory.queued === 1, 'the second request to wait for room')
    client.abort()
    await until(() => memory.queued === 0, 'the second request to leave the line')
    expect(memory.used).toBe(1000)
    expect((await held.finish()).status).toBe(200)
    expect([memory.used, memory.queued]).toEqual([0, 0])
    expect([499, 'aborted']).toContain(await gone)
  })
})

describe('traffic.explicit', () => {
  it('serves a version the split leaves out only by its name under "any"; "listed" (the default) answers 403 naming the served versions', async () => {
    await configure({ version_labels: { canary: 3 }, traffic: { versions: { '1': 100, '2': 0 } } })
    expect(await answer(await post(`/v1/models/${NAME}/versions/2:predict`, { instances: [SETOSA] }))).toEqual({
      version: '2',
      top: 1,
    })
    for (const path of [
      `/v1/models/${NAME}/versions/3:predict`,
      `/v1/models/${NAME}/labels/canary:predict`,
      `/v2/models/${NAME}/versions/3/infer`,
    ]) {
      const res = await post(path, path.includes('/v2/') ? v2Body : { instances: [SETOSA] })
      expect(res.status).toBe(403)
      const named = path.includes('canary') ? "label 'canary' (version 3)" : 'version 3'
      expect((await res.json<{ error: string }>()).error).toBe(
        `model '${NAME}' does not serve ${named} by name: its traffic split lists versions 1, 2 (config.json traffic.versions; traffic.explicit "any" serves every version by name)`,
      )
    }
    const refused = await rpcCaller.call('run', NAME, { instances: [SETOSA] }, { version: 3 })
    expect(refused.error).toMatchObject({ status: 403 })
    // Its status and metadata still answer: the version exists, it is only not served by name.
    expect((await call(`/v1/models/${NAME}/versions/3`)).status).toBe(200)
    await configure({ version_labels: { canary: 3 }, traffic: { versions: { '1': 100 }, explicit: 'any' } })
    expect(await answer(await post(`/v1/models/${NAME}/labels/canary:predict`, { instances: [SETOSA] }))).toEqual({
      version: '3',
      top: 2,
    })
    expect(checkModelConfig({ traffic: { versions: { '1': 1 }, explicit: 'all' } })).toMatchObject({
      ok: false,
      message: expect.stringMatching(/at traffic\.explicit/),
    })
  })
})

describe('shadow', () => {
  it('runs the shadow version after the response and records the comparison; the client gets what the served version alone gives', async () => {
    await configure({ traffic: { versions: { '1': 100 } } })
    const alone = await post(PREDICT, { instances: [SETOSA, SETOSA] })
    const aloneBody = await alone.text()
    await configure({ traffic: { versions: { '1': 100 } }, shadow: { version: 3, fraction: 1 } })
    const lines: Record<string, unknown>[] = []
    vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(JSON.parse(line)))
    await post(PREDICT, { instances: [SETOSA] }) // loads v3 as a shadow; tensors settle
    const tensors = tf.memory().numTensors
    const shadowed = await post(PREDICT, { instances: [SETOSA, SETOSA] }) // call() waits for waitUntil: the shadow run is done
    expect(shadowed.status).toBe(200)
    expect(shadowed.headers.get('x-model-version')).toBe('1')
    expect(await shadowed.text()).toBe(aloneBody)
    expect(tf.memory().numTensors).toBe(tensors)
    const compared = lines.filter((l) => l.event === 'shadow.compared')
    expect(compared.at(-1)).toMatchObject({
      model: NAME,
      version: 1,
      shadowVersion: 3,
      rows: 2,
      top1Agreement: 0,
      disagreed: true,
      requestId: shadowed.headers.get('x-request-id'),
    })
    expect(compared.at(-1)!.maxAbsDiff).toBeGreaterThan(0.9)
    expect(await answer(await post(INFER, v2Body))).toEqual({ version: '1', top: 0 })
    const metric = await scrape()
    const labels = { model: NAME, version: '1', shadow_version: '3' }
    expect(metric('warmserve_shadow_requests_total', { ...labels, outcome: 'compared' })).toBe(3)
    expect(metric('warmserve_shadow_disagreements_total', labels)).toBe(3)
  })

  it('agrees with a shadow that is the same model, and skips a fraction of 0', async () => {
    await publish(env.MODELS, NAME, 4, await irisWithBias([50, 0, 0]))
    await configure({ traffic: { versions: { '1': 100 } }, shadow: { version: 4, fraction: 1 } })
    const lines: Record<string, unknown>[] = []
    vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(JSON.parse(line)))
    expect(await answer(await post(PREDICT, { instances: [SETOSA] }))).toEqual({ version: '1', top: 0 })
    expect(lines.find((l) => l.event === 'shadow.compared')).toMatchObject({
      shadowVersion: 4,
      maxAbsDiff: 0,
      top1Agreement: 1,
      disagreed: false,
    })
    await configure({ traffic: { versions: { '1': 100 } }, shadow: { version: 4, fraction: 0 } })
    await post(PREDICT, { instances: [SETOSA] })
    const metric = await scrape()
    expect(
      metric('warmserve_shadow_requests_total', {
        model: NAME,
        version: '1',
        shadow_version: '4',
        outcome: 'compared',
      }),
    ).toBe(1)
    expect(metric('warmserve_shadow_disagreements_total', { model: NAME, version: '1', shadow_version: '4' })).toBe(0)
  })

  it('serves every one of 12 concurrent 64-row shadowed requests, and holds each copy in the memory budget until its shadow run starts', async () => {
    await configure({ traffic: { versions: { '1': 100 } }, shadow: { version: 3, fraction: 1 } })
    const rows = Array.from({ length: 64 }, () => SETOSA)
    const metric = await scrape()
    const compared = metric('warmserve_shadow_requests_total', {
      model: NAME,
      shadow_version: '3',
      outcome: 'compared',
    })
    const served = await Promise.all(Array.from({ length: 12 }, () => post(PREDICT, { instances: rows })))
    expect(served.map((r) => r.status)).toEqual(Array.from({ length: 12 }, () => 200))
    expect(
      (await scrape())('warmserve_shadow_requests_total', { model: NAME, shadow_version: '3', outcome: 'compared' }),
    ).toBe(compared + 12)
    expect(isolate().cache.admission.ledger.transient()).toBe(0)
  })

  it('copies nothing for a shadow run the budget has no room for: skipped, counted and logged', async () => {
    await configure({ traffic: { versions: { '1': 100 } }, shadow: { version: 3, fraction: 1 } })
    const traffic = isolate().traffic
    const target = (await isolate().repository(env)).resolve(NAME, { version: 1 })
    const inputs = { features: tf.zeros([64, 4]) }
    const outputs = { scores: tf.zeros([64, 3]) }
    const ledger = isolate().cache.admission.ledger
    const tensors = tf.memory().numTensors
    const lines: Record<string, unknown>[] = []
    vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(JSON.parse(line)))
    // Everything but 1 KB of the budget taken: the copy of 64 × 4 inputs and 64 × 3 outputs (float32) needs 1792 bytes.
    const filler = {}
    ledger.hold(filler, 'resident', ledger.limit - ledger.used() - 1024)
    try {
      expect(traffic.capture(target, 3, inputs, outputs, { requestId: 'r1' })).toBeUndefined()
      expect(tf.memory().numTensors).toBe(tensors)
    } finally {
      ledger.release(filler)
    }
    expect(lines.find((l) => l.event === 'shadow.skipped')).toMatchObject({
      requestId: 'r1',
      model: NAME,
      version: 1,
      shadowVersion: 3,
      reason: 'memory',
      bytes: 1792,
      freeBytes: 1024,
    })
    expect(
      (await scrape())('warmserve_shadow_requests_total', {
        model: NAME,
        version: '1',
        shadow_version: '3',
        outcome: 'skipped',
        reason: 'memory',
      }),
    ).toBe(1)
    // With room, the copy is made and its bytes held in the budget until it is dropped.
    const used = ledger.used()
    const captured = traffic.capture(target, 3, inputs, outputs, {})!
    expect(ledger.used()).toBe(used + 1792)
    traffic.dropCaptured(captured)
    expect([ledger.used(), tf.memory().numTensors]).toEqual([used, tensors])
    tf.dispose([inputs.features, outputs.scores])
  })

  it('copies nothing of inputs the run moved off the heap (disposed, their rows made from copies): skipped for memory, the request unharmed', async () => {
    await configure({ traffic: { versions: { '1': 100 } }, shadow: { version: 3, fraction: 1 } })
    const target = (await isolate().repository(env)).resolve(NAME, { version: 1 })
    const inputs = { features: tf.zeros([64, 4]) }
    const outputs = { scores: tf.zeros([64, 3]) }
    new InputCopies().take(inputs)
    const tensors = tf.memory().numTensors
    const lines: Record<string, unknown>[] = []
    vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(JSON.parse(line)))
    expect(isolate().traffic.capture(target, 3, inputs, outputs, { requestId: 'r2' })).toBeUndefined()
    expect(tf.memory().numTensors).toBe(tensors)
    expect(lines.find((l) => l.event === 'shadow.skipped')).toMatchObject({ requestId: 'r2', reason: 'memory' })
    tf.dispose(outputs.scores)
  })

  it('costs the client nothing when the shadow version fails to load', async () => {
    await configure({ traffic: { versions: { '1': 100 } }, shadow: { version: 4, fraction: 1 } })
    await isolate().unload(env, NAME, 4)
    // The file changed after validation: the load fails its sha256 check.
    await env.MODELS.put(`${NAME}/4/group1-shard1of1.bin`, new Uint8Array(524))
    const warnings: Record<string, unknown>[] = []
    vi.spyOn(console, 'warn').mockImplementation((line: string) => void warnings.push(JSON.parse(line)))
    const tensors = tf.memory().numTensors
    expect(await answer(await post(PREDICT, { instances: [SETOSA] }))).toEqual({ version: '1', top: 0 })
    expect(tf.memory().numTensors).toBe(tensors)
    expect(warnings.find((l) => l.event === 'shadow.failed')).toMatchObject({
      model: NAME,
      version: 1,
      shadowVersion: 4,
    })
    expect(
      (await scrape())('warmserve_shadow_requests_total', {
        model: NAME,
        version: '1',
        shadow_version: '4',
        outcome: 'failed',
      }),
    ).toBe(1)
  })
})

describe('one pass per request', () => {
  it('routes one inference once, whatever the transport: one traffic control call, one version resolution, one lease', async () => {
    await configure({ traffic: { versions: { '1': 1, '2': 1 } } })
    const state = isolate()
    // The routed version is leased as resolved (leaseVersion); a lease by name would resolve it again.
    const serve = vi.spyOn(state.traffic, 'serve')
    const byName = vi.spyOn(state, 'lease')
    const byVersion = vi.spyOn(state, 'leaseVersion')
    const requests: [string, () => Promise<unknown>][] = [
      ['v2 infer over HTTP', async () => answer(await post(INFER, v2Body))],
      ['TF Serving predict over HTTP', async () => answer(await post(PREDICT, { instances: [SETOSA] }))],
      [
        'v2 infer over RPC',
        async () => expect((await rpcCaller.call('infer', NAME, v2Body)).value).toMatchObject({ model_name: NAME }),
      ],
    ]
    for (const [what, request] of requests) {
      for (const spy of [serve, byName, byVersion]) spy.mockClear()
      await request()
      expect([serve.mock.calls.length, byVersion.mock.calls.length, byName.mock.calls.length], what).toEqual([1, 1, 0])
    }
  })
})
