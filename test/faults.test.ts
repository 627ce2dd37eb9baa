import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { tf } from '../src/runtime/tf'
import { post, SETOSA, isolateOnFakeClock } from './support/helpers'

/**
 * The real ASSETS binding with a fault injected for some paths: the model-source seam.
 * `fault` returns a Response to send instead, throws to fail the fetch, or returns undefined to pass through.
 */
function withFault(
  fault: (path: string) => Response | undefined | void | Promise<Response | undefined>,
  vars: Record<string, string> = {},
) {
  const log: string[] = []
  const assets = {
    async fetch(input: RequestInfo | URL, init?: RequestInit) {
      const path = new URL(input instanceof Request ? input.url : String(input)).pathname
      log.push(path)
      return (await fault(path)) ?? env.ASSETS.fetch(input, init)
    },
  } as unknown as Fetcher
  return { env: { ...env, ...vars, ASSETS: assets } as Env, log }
}

/** Another model, digits, is still served through the same faulty binding: a fault stays with its model. */
async function expectDigitsServed(bindings: Env) {
  const other = await post(
    '/v1/models/digits:predict',
    { instances: [Array(28).fill(Array(28).fill([0]))] },
    {},
    bindings,
  )
  expect(other.status).toBe(200)
}

// The isolate state's clock: a backoff passes when a test says so.
const clock = isolateOnFakeClock()

describe('a model that cannot be loaded', () => {
  it('answers 503 with Retry-After, does not retry during the backoff, and recovers after it', async () => {
    let broken = true
    const faulty = withFault(
      (path) => {
        if (broken && path.endsWith('.bin')) throw new Error('connection reset')
      },
      { LOAD_BACKOFF_BASE_MS: '300' },
    )
    const first = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, faulty.env)
    expect(first.status).toBe(503)
    expect(first.headers.get('retry-after')).toBe('1')
    expect((await first.json<any>()).error).toMatch(/model iris\/1 could not be loaded: connection reset/)

    const shardFetches = () => faulty.log.filter((p) => p.endsWith('.bin')).length
    const fetched = shardFetches()
    const during = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, faulty.env)
    expect(during.status).toBe(503)
    expect(shardFetches()).toBe(fetched) // backing off: no new load

    broken = false
    clock.advance(350)
    const after = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, faulty.env)
    expect(after.status).toBe(200)
    expect(after.headers.get('x-model-cache')).toBe('miss')
  })

  it.each([
    [
      'a truncated weight shard',
      (res: Response) => res.arrayBuffer().then((b) => new Response(b.slice(0, 100))),
      /weight shards hold 100 bytes but the manifest describes \d+/,
    ],
    ['a missing weight shard', () => new Response('not found', { status: 404 }), /\.bin is missing from static assets/],
    ['an invalid model.json', () => new Response('{"modelTopology": '), /model\.json is not valid JSON/, 'model.json'],
    ['a model.json that is no model', () => new Response('{"hello": 1}'), /not a TF\.js model/, 'model.json'],
    ['a storage error', () => new Response('oops', { status: 500 }), /static assets answered 500/],
  ] as [string, (res: Response) => Response | Promise<Response>, RegExp, string?][])(
    'fails cleanly on %s, and keeps serving other models',
    async (_name, damage, message, file = '.bin') => {
      const before = tf.memory().numTensors
      const faulty = withFault(async (path) => {
        if (path.startsWith('/iris/') && path.endsWith(file)) return damage(await env.ASSETS.fetch(`https://a${path}`))
      })
      const res = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, faulty.env)
      expect(res.status).toBe(503)
      expect((await res.json<any>()).error).toMatch(message)
      expect(tf.memory().numTensors).toBe(before) // nothing half-loaded stays in memory
      await expectDigitsServed(faulty.env)
    },
  )

  it('answers 503 when the store hangs past STORE_READ_TIMEOUT_MS, and keeps serving other models', async () => {
    const faulty = withFault(
      (path) => (path.startsWith('/iris/') && path.endsWith('.bin') ? new Promise<never>(() => {}) : undefined),
      {
        STORE_READ_TIMEOUT_MS: '200',
      },
    )
    const res = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, faulty.env)
    expect(res.status).toBe(503)
    expect((await res.json<any>()).error).toMatch(
      /static assets \(reading iris\/1\/group1-shard1of1\.bin\) did not answer within 200 ms/,
    )
    await expectDigitsServed(faulty.env)
  })

  it('answers 503 when the repository index cannot be read', async () => {
    const faulty = withFault((path) => (path === '/_index.json' ? new Response('gone', { status: 404 }) : undefined))
    const res = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, faulty.env)
    expect(res.status).toBe(503)
    expect((await res.json<any>()).error).toMatch(/model repository unavailable: _index\.json is missing/)
  })

  it('reports the failure in the version status the way TF Serving does', async () => {
    const faulty = withFault((path) => (path.endsWith('.bin') ? new Response('x', { status: 500 }) : undefined))
    const { call } = await import('./support/helpers')
    const res = await call('/v1/models/iris', undefined, faulty.env)
    expect(res.status).toBe(200)
    const body = await res.json<any>()
    expect(body.model_version_status[0]).toMatchObject({
      version: '1',
      state: 'END',
      status: { error_code: 'UNAVAILABLE' },
    })
    expect(body.model_version_status[0].status.error_message).toMatch(/static assets answered 500/)
  })
})

describe('a model.json whose weight paths leave the model folder', () => {
  // iris's own model.json with its one shard path replaced, served in its place: each path below
  // reaches digits' shard when the assets store reads it as a URL.
  it.each([
    ['dot segments', '../../digits/1/group1-shard1of1.bin'],
    ['percent-encoded dots, which URL parsing resolves', '%2e%2e/%2e%2e/digits/1/group1-shard1of1.bin'],
    ['backslashes, which URL parsing reads as slashes', 'a\\..\\..\\..\\digits\\1\\group1-shard1of1.bin'],
    ['encoded slashes', '..%2f..%2fdigits%2f1%2fgroup1-shard1of1.bin'],
  ])('is refused before any shard it names is read: %s', async (_name, shard) => {
    const original = await (await env.ASSETS.fetch('https://assets.invalid/iris/1/model.json')).json<any>()
    const hostile = JSON.stringify({
      ...original,
      weightsManifest: [{ ...original.weightsManifest[0], paths: [shard] }],
    })
    const faulty = withFault((path) => (path === '/iris/1/model.json' ? new Response(hostile) : undefined))
    const res = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, faulty.env)
    expect(res.status).toBe(503)
    expect((await res.json<any>()).error).toContain(`weight shard path '${shard}' leaves the model folder iris/1/`)
    // Nothing outside iris/1/ was read: the only shard read is the one the repository index lists
    // there, which a load reads beside model.json (repository/model-files.ts).
    expect(faulty.log.filter((path) => path.endsWith('.bin'))).toEqual(['/iris/1/group1-shard1of1.bin'])
  })
})

describe('a load', () => {
  it('reads the shards the repository index lists beside model.json, not after it, and each once', async () => {
    // model.json answers only once its shard has been asked for (or after 3 s, when it never is).
    let shardAsked = false
    const shard = '/iris/1/group1-shard1of1.bin'
    const slow = withFault(async (path) => {
      if (path !== '/iris/1/model.json') return undefined
      const deadline = Date.now() + 3_000
      while (!(shardAsked = slow.log.includes(shard)) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 5))
      return undefined
    })
    const res = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, slow.env)
    expect(res.status).toBe(200)
    expect(shardAsked).toBe(true)
    expect(slow.log.filter((path) => path.endsWith('.bin'))).toEqual([shard])
  })
})
