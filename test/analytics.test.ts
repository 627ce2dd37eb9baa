/// <reference types="vite/client" />
// Workers Analytics Engine points (src/analytics/analytics.ts): with a capturing dataset bound as INFERENCE (the
// local binding drops writes, so the test binds an object with its `writeDataPoint`), each kind of
// inference request writes the documented point; loads, unloads and shadow runs write their own;
// failures carry their error code; a throwing dataset fails nothing; no binding, no writes. The
// schema test keeps docs/analytics.md and the .sql files in step with the code's schema.
import type { Place } from '../src/traffic/gate'
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { dataPoint, MAX_PENDING_EVENTS, PointWriter } from '../src/analytics/analytics'
import { inferenceRoute } from '../src/http/middleware/analytics'
import { COLUMNS, LIMITS, MAX_BLOB_BYTES, schemaTable, sqlName } from '../src/analytics/schema'
import { isolate, resetIsolate } from '../src/isolate'
import { Models } from '../src/rpc/entrypoint'
import { tf } from '../src/runtime/tf'
import worker from '../src/index'
import { fakeClock, runCron, SETOSA } from './support/helpers'
import { digitPng } from './support/digits'
import { irisWithBias, publish } from './support/r2-helpers'
import doc from '../docs/analytics.md?raw'

const queries = import.meta.glob('../docs/analytics/*.sql', {
  query: '?raw',
  import: 'default',
  eager: true,
}) as Record<string, string>

const VERSICOLOR = [6.4, 3.2, 4.5, 1.5]
const COLO = 'TST'

/** A dataset that keeps what is written, as Analytics Engine would receive it. */
function capturing() {
  const points: AnalyticsEngineDataPoint[] = []
  const bindings = {
    ...env,
    INFERENCE: { writeDataPoint: (point?: AnalyticsEngineDataPoint) => void points.push(structuredClone(point!)) },
  } as Env
  return { points, bindings }
}

const blobColumns = COLUMNS.filter((c) => c.kind === 'blob')
const doubleColumns = COLUMNS.filter((c) => c.kind === 'double')
const utf8 = (text: string) => new TextEncoder().encode(text).byteLength

/** A point checked against the platform's limits and the schema's shape, read back by column name. */
function read(point: AnalyticsEngineDataPoint): Record<string, string | number> {
  expect(point.indexes).toHaveLength(1)
  expect(typeof point.indexes![0]).toBe('string')
  expect(utf8(point.indexes![0] as string)).toBeLessThanOrEqual(LIMITS.indexBytes)
  expect(point.blobs).toHaveLength(blobColumns.length)
  expect(point.doubles).toHaveLength(doubleColumns.length)
  for (const blob of point.blobs!) expect(typeof blob).toBe('string')
  for (const double of point.doubles!) expect(Number.isFinite(double)).toBe(true)
  expect(point.blobs!.reduce((n, b) => n + utf8(b as string), 0)).toBeLessThanOrEqual(LIMITS.blobsTotalBytes)
  const fields: Record<string, string | number> = { index: point.indexes![0] as string }
  blobColumns.forEach((c, i) => (fields[c.name] = point.blobs![i] as string))
  doubleColumns.forEach((c, i) => (fields[c.name] = point.doubles![i]!))
  return fields
}

/**
 * Calls the Worker as the runtime does, from colo TST, with the Content-Length an HTTP client sends,
 * and reads the body (the point is written once it is sent).
 */
async function request(bindings: Env, path: string, init: RequestInit = {}) {
  const ctx = createExecutionContext()
  const headers = new Headers(init.headers)
  const { body } = init
  if (typeof body === 'string' || body instanceof Uint8Array)
    headers.set('content-length', String(typeof body === 'string' ? utf8(body) : body.byteLength))
  const response = await worker.fetch(
    new Request(`http://warmserve.test${path}`, { ...init, headers, cf: { colo: COLO } } as RequestInit),
    bindings,
    ctx,
  )
  const text = await response.text()
  await waitOnExecutionContext(ctx)
  return { response, text }
}

const json = (body: unknown) => ({
  method: 'POST',
  body: JSON.stringify(body),
  headers: { 'content-type': 'application/json' },
})

/** The isolate-wide fields every point carries. */
const isolateFields = () => ({
  backend: tf.getBackend(),
  isolate_age_ms: expect.any(Number),
  resident_bytes: expect.any(Number),
})

beforeEach(() => {
  resetIsolate()
})

describe('one point per inference request', () => {
  it(':predict writes the request point, then the load it caused; a warm request writes one point', async () => {
    const { points, bindings } = capturing()
    const body = { instances: [SETOSA, VERSICOLOR] }
    const { response, text } = await request(bindings, '/v1/models/iris:predict', json(body))
    expect(response.status).toBe(200)
    expect(points.map((p) => read(p).event)).toEqual(['request', 'load'])
    const point = read(points[0]!)
    expect(point).toEqual({
      index: 'iris',
      event: 'request',
      model: 'iris',
      version: '1',
      route: 'tf-serving:predict',
      status_class: '2xx',
      error_code: '',
      colo: COLO,
      model_cache: 'miss',
      prediction_cache: '',
      traffic_rule: 'default',
      shadow_version: '',
      source: 'assets',
      reason: '',
      request_id: response.headers.get('x-request-id'),
      total_ms: expect.any(Number),
      queue_ms: expect.any(Number),
      load_ms: expect.any(Number),
      decode_ms: 0,
      infer_ms: expect.any(Number),
      rows: 2,
      bytes_in: utf8(JSON.stringify(body)),
      bytes_out: utf8(text),
      status: 200,
      model_memory_bytes: isolate().cache.signatureOf('iris/1')!.memoryBytes,
      disagreed: 0,
      max_abs_diff: 0,
      ...isolateFields(),
    })
    expect(point.model_memory_bytes).toBeGreaterThan(0)
    expect(point.total_ms).toBeGreaterThanOrEqual(point.load_ms as number)
    expect(read(points[1]!)).toMatchObject({
      index: 'iris',
      event: 'load',
      model: 'iris',
      version: '1',
      status_class: '2xx',
      reason: 'load',
      model_memory_bytes: point.model_memory_bytes,
      status: 0,
    })

    points.length = 0
    await request(bindings, '/v1/models/iris/versions/1:predict', json({ instances: [SETOSA] }))
    expect(points).toHaveLength(1)
    expect(read(points[0]!)).toMatchObject({
      event: 'request',
      model_cache: 'hit',
      load_ms: 0,
      rows: 1,
      traffic_rule: 'named',
      status: 200,
    })
  })

  it(':classify with an image body writes its route, rows and decode time', async () => {
    const { points, bindings } = capturing()
    const png = digitPng(0)
    const { response } = await request(bindings, '/v1/models/digits:classify', {
      method: 'POST',
      body: png,
      headers: { 'content-type': 'image/png' },
    })
    expect(response.status).toBe(200)
    const point = read(points.find((p) => read(p).event === 'request')!)
    expect(point).toMatchObject({
      model: 'digits',
      version: '1',
      route: 'tf-serving:classify',
      status: 200,
      rows: 1,
      bytes_in: png.byteLength,
      model_cache: 'miss',
    })
    const timing = response.headers.get('server-timing')!
    expect(point.decode_ms).toBe(Number(/decode;dur=(\d+)/.exec(timing)![1]))
  })

  it('v2 infer writes its route', async () => {
    const { points, bindings } = capturing()
    const body = {
      inputs: [{ name: 'features', shape: [3, 4], datatype: 'FP32', data: [...SETOSA, ...VERSICOLOR, ...SETOSA] }],
    }
    const { text } = await request(bindings, '/v2/models/iris/infer', json(body))
    expect(points.map((p) => read(p).event)).toEqual(['request', 'load'])
    expect(read(points[0]!)).toMatchObject({
      model: 'iris',
      route: 'v2:infer',
      status: 200,
      status_class: '2xx',
      rows: 3,
      bytes_out: utf8(text),
      colo: COLO,
    })
  })

  it('a model with a prediction cache writes the cache outcome: a miss runs the model, a hit does not', async () => {
    const { points, bindings } = capturing()
    // Inputs of this test's own, so an answer cached by another file's requests cannot be the one found.
    const body = { instances: [[5.05, 3.45, 1.45, 0.25]] }
    for (const expected of ['miss', 'hit']) {
      const { response } = await request(bindings, '/v1/models/cache-iris/versions/1:predict', json(body))
      expect(response.headers.get('x-prediction-cache')).toBe(expected)
    }
    const requests = points.map(read).filter((p) => p.event === 'request')
    expect(requests.map((p) => [p.prediction_cache, p.model_cache, p.rows])).toEqual([
      ['miss', 'miss', 1],
      ['hit', 'hit', 1],
    ])
    expect(requests[1]!.infer_ms).toBe(0)
  })

  it("the Models entrypoint's run and infer write one point each, with no colo or bytes", async () => {
    const { points, bindings } = capturing()
    const ctx = createExecutionContext()
    const models = new Models(ctx, bindings)
    await models.run('iris', { instances: [SETOSA] })
    await models.run('digits', { image: digitPng(1) }, { top_k: 1 })
    await models.infer('iris', {
      inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 4], data: Float32Array.from(SETOSA) }],
    })
    await models.metadata('iris')
    await waitOnExecutionContext(ctx)
    const requests = points.map(read).filter((p) => p.event === 'request')
    expect(requests.map((p) => [p.route, p.model, p.model_cache])).toEqual([
      ['rpc:run', 'iris', 'miss'],
      ['rpc:run', 'digits', 'miss'],
      ['rpc:infer', 'iris', 'hit'],
    ])
    for (const p of requests)
      expect(p).toMatchObject({
        status: 200,
        status_class: '2xx',
        colo: '',
        bytes_in: 0,
        bytes_out: 0,
        request_id: '',
        rows: 1,
      })
    expect(requests[1]!.decode_ms).toEqual(expect.any(Number))
    expect(
      points
        .map(read)
        .filter((p) => p.event === 'load')
        .map((p) => p.model),
    ).toEqual(['iris', 'digits'])
  })
})

describe('failures', () => {
  it('a failing request writes its status and error code', async () => {
    const { points, bindings } = capturing()
    expect((await request(bindings, '/v1/models/iris:predict', json({ instances: [[1, 2, 3]] }))).response.status).toBe(
      400,
    )
    expect((await request(bindings, '/v1/models/nope:predict', json({ instances: [SETOSA] }))).response.status).toBe(
      404,
    )
    expect(
      (
        await request(bindings, '/v2/models/iris/infer', {
          method: 'POST',
          body: '{',
          headers: { 'content-type': 'application/json' },
        })
      ).response.status,
    ).toBe(400)
    const requests = points.map(read).filter((p) => p.event === 'request')
    expect(requests.map((p) => [p.model, p.status, p.status_class, p.error_code])).toEqual([
      ['iris', 400, '4xx', 'bad_request'],
      ['nope', 404, '4xx', 'not_found'],
      ['iris', 400, '4xx', 'bad_request'],
    ])
    // The first got as far as the model: its version and cache outcome are there.
    expect(requests[0]).toMatchObject({ version: '1', model_cache: 'miss', rows: 0, infer_ms: 0 })
    expect(requests[1]).toMatchObject({ index: 'nope', version: '', model_cache: '' })
  })

  it('a model that fails to load writes a 503 request and a failed load', async () => {
    const { points, bindings } = capturing()
    // The real ASSETS binding, with the weight shard's fetch failing.
    const assets = {
      fetch: (input: RequestInfo | URL, init?: RequestInit) => {
        if (new URL(input instanceof Request ? input.url : String(input)).pathname.endsWith('.bin'))
          throw new Error('connection reset')
        return env.ASSETS.fetch(input, init)
      },
    } as unknown as Fetcher
    const { response } = await request(
      { ...bindings, ASSETS: assets } as Env,
      '/v1/models/iris:predict',
      json({ instances: [SETOSA] }),
    )
    expect(response.status).toBe(503)
    expect(points.map(read).map((p) => [p.event, p.status_class, p.error_code, p.model, p.version])).toEqual([
      ['request', '5xx', 'model_unavailable', 'iris', '1'],
      ['load', '5xx', 'load_failed', 'iris', '1'],
    ])
    expect(read(points[1]!).reason).toMatch(/connection reset/)
  })

  it('a 429 says which limit refused it, over HTTP and RPC', async () => {
    const { points, bindings } = capturing()
    const limited = { ...bindings, MAX_CONCURRENT: '1', MAX_QUEUE: '0' } as Env
    // The isolate reads the R2 pointer first (readiness does), as a busy one has: during its first
    // read it would load the model the request asks for (repository/follow.ts), a point of its own.
    expect((await request(env, '/v2/health/ready')).response.status).toBe(200)
    const gate = isolate().traffic.isolateGate
    gate.configure(1, 0)
    const held = gate.enter() as Place
    expect(held.state).toBe('holding')
    try {
      expect((await request(limited, '/v1/models/iris:predict', json({ instances: [SETOSA] }))).response.status).toBe(
        429,
      )
      await expect(
        new Models(createExecutionContext(), limited).run('iris', { instances: [SETOSA] }),
      ).rejects.toMatchObject({ status: 429 })
    } finally {
      held.leave()
    }
    expect(points.map(read).map((p) => [p.event, p.route, p.status, p.error_code])).toEqual([
      ['request', 'tf-serving:predict', 429, 'capacity_isolate'],
      ['request', 'rpc:run', 429, 'capacity_isolate'],
    ])
  })

  it('a throwing writeDataPoint fails no request: the answer is the same, and a warning is logged', async () => {
    const { text: expected } = await request(env, '/v1/models/iris:predict', json({ instances: [SETOSA] }))
    const throwing = {
      ...env,
      INFERENCE: {
        writeDataPoint: () => {
          throw new Error('dataset down')
        },
      },
    } as Env
    const warnings: string[] = []
    vi.spyOn(console, 'warn').mockImplementation((line: string) => void warnings.push(line))
    try {
      const { response, text } = await request(throwing, '/v1/models/iris:predict', json({ instances: [SETOSA] }))
      expect(response.status).toBe(200)
      expect(text).toBe(expected)
      await expect(
        new Models(createExecutionContext(), throwing).run('iris', { instances: [SETOSA] }),
      ).resolves.toEqual(JSON.parse(expected))
    } finally {
      vi.restoreAllMocks()
    }
    expect(warnings.map((w) => JSON.parse(w))).toContainEqual(
      expect.objectContaining({ event: 'analytics.write_failed', error: 'dataset down' }),
    )
  })

  it('without the binding nothing is written and nothing fails', async () => {
    const write = vi.spyOn(PointWriter.prototype, 'write')
    try {
      const { response } = await request(env, '/v1/models/iris:predict', json({ instances: [SETOSA] }))
      expect(response.status).toBe(200)
      await new Models(createExecutionContext(), env).run('iris', { instances: [SETOSA] })
      await runCron(env)
      expect(write).not.toHaveBeenCalled()
    } finally {
      write.mockRestore()
    }
    // The loads wait, bounded, for an invocation that has the binding.
    expect(isolate().analytics.pendingCount).toBe(1)
    for (let i = 0; i < MAX_PENDING_EVENTS + 10; i++) isolate().analytics.unloaded('iris/1', 'test', 0)
    expect(isolate().analytics.pendingCount).toBe(MAX_PENDING_EVENTS)
  })
})

describe('loads, unloads and the per-invocation limit', () => {
  it('an unload writes its reason with the next invocation; one invocation writes at most 25 points, the request first', async () => {
    const { points, bindings } = capturing()
    await request(bindings, '/v1/models/iris:predict', json({ instances: [SETOSA] }))
    await isolate().unload(bindings, 'iris')
    points.length = 0
    await request(bindings, '/v1/models/iris:predict', json({ instances: [SETOSA] }))
    expect(points.map(read).map((p) => [p.event, p.reason, p.model_cache])).toEqual([
      ['request', '', 'miss'],
      ['unload', 'dropped: unloaded by an admin', ''],
      ['load', 'load', ''],
    ])

    for (let i = 0; i < 40; i++) isolate().analytics.unloaded(`m${i}/1`, 'test', 0)
    points.length = 0
    await request(bindings, '/v1/models/iris:predict', json({ instances: [SETOSA] }))
    expect(points).toHaveLength(LIMITS.pointsPerInvocation)
    expect(read(points[0]!).event).toBe('request')
    expect(points.slice(1).map((p) => read(p).model)).toEqual(Array.from({ length: 24 }, (_, i) => `m${i}`))
    points.length = 0
    // A request that is not an inference writes no point of its own, only what waits.
    await request(bindings, '/v2/health/live')
    expect(points.map((p) => read(p).model)).toEqual(Array.from({ length: 16 }, (_, i) => `m${i + 24}`))
  })

  it('the cron writes the unloads of its idle drops', async () => {
    const clock = fakeClock()
    resetIsolate({ now: clock.now })
    const { points, bindings } = capturing()
    await request(bindings, '/v1/models/iris:predict', json({ instances: [SETOSA] }))
    points.length = 0
    clock.advance(2_000)
    await runCron({ ...bindings, MODEL_IDLE_TTL_SECONDS: '1' } as Env)
    const unloads = points.map(read).filter((p) => p.event === 'unload')
    expect(unloads.map((p) => [p.model, p.version, p.reason])).toEqual([
      ['iris', '1', 'dropped: idle for more than 1000 ms'],
    ])
    // On the isolate's clock: two seconds after its start.
    expect(unloads[0]!.isolate_age_ms).toBe(2_000)
  })

  it('an isolate state made during module evaluation, where the clock reads 0, is as old as its first request', async () => {
    // workerd's clock reads 0 outside a request, so src/index.ts's isolate() starts the clock there.
    let t = 0
    resetIsolate({ now: () => t })
    t = 1_700_000_000_000
    const { points, bindings } = capturing()
    await request(bindings, '/v1/models/iris:predict', json({ instances: [SETOSA] }))
    t += 1_500
    isolate().analytics.unloaded('iris/1', 'test', 0)
    await request(bindings, '/v2/health/live')
    expect(points.map(read).map((p) => [p.event, p.isolate_age_ms])).toEqual([
      ['request', 0],
      ['load', 0],
      ['unload', 1_500],
    ])
  })
})

describe('shadow runs', () => {
  it('a shadowed request names its shadow version, and the shadow run writes whether it disagreed', async () => {
    const NAME = 'analytics-iris'
    await publish(env.MODELS, NAME, 1, await irisWithBias([50, 0, 0]))
    await publish(env.MODELS, NAME, 2, await irisWithBias([0, 0, 50]))
    await env.MODELS.put(
      `${NAME}/config.json`,
      JSON.stringify({ traffic: { versions: { '1': 100 } }, shadow: { version: 2, fraction: 1 } }),
    )
    const { points, bindings } = capturing()
    await runCron(bindings)
    points.length = 0
    const { response } = await request(bindings, `/v1/models/${NAME}:predict`, json({ instances: [SETOSA] }))
    expect(response.headers.get('x-model-version')).toBe('1')
    const written = points.map(read)
    expect(written.find((p) => p.event === 'request')).toMatchObject({
      model: NAME,
      version: '1',
      traffic_rule: 'weighted',
      shadow_version: '2',
      source: 'r2',
    })
    expect(written.find((p) => p.event === 'shadow')).toMatchObject({
      model: NAME,
      version: '1',
      shadow_version: '2',
      route: 'tf-serving:predict',
      reason: 'compared',
      status_class: '2xx',
      error_code: '',
      disagreed: 1,
      colo: COLO,
      request_id: response.headers.get('x-request-id'),
    })
    expect(written.find((p) => p.event === 'shadow')!.max_abs_diff).toBeGreaterThan(0.9)
  })
})

describe('which HTTP requests are inference requests', () => {
  it('POSTs to the predict, classify (detect, embed) and infer paths, with the model they name', () => {
    expect(inferenceRoute('POST', '/v1/models/iris:predict')).toEqual({ route: 'tf-serving:predict', model: 'iris' })
    expect(inferenceRoute('POST', '/v1/models/iris/versions/2:classify')).toEqual({
      route: 'tf-serving:classify',
      model: 'iris',
    })
    expect(inferenceRoute('POST', '/v1/models/my.model/labels/stable:embed')).toEqual({
      route: 'tf-serving:embed',
      model: 'my.model',
    })
    expect(inferenceRoute('POST', '/v1/models/coco:detect')).toEqual({ route: 'tf-serving:detect', model: 'coco' })
    expect(inferenceRoute('POST', '/v2/models/iris/versions/1/infer')).toEqual({ route: 'v2:infer', model: 'iris' })
    expect(inferenceRoute('POST', '/v2/models/a%20b/infer')).toEqual({ route: 'v2:infer', model: 'a b' })
    for (const [method, path] of [
      ['GET', '/v1/models/iris:predict'],
      ['POST', '/v1/models/iris:regress'],
      ['POST', '/v1/models/iris'],
      ['POST', '/v2/repository/index'],
      ['GET', '/v2/models/iris'],
    ]) {
      expect(inferenceRoute(method!, path!), `${method} ${path}`).toBeUndefined()
    }
  })
})

describe('the schema', () => {
  it('fits the limits of a data point', () => {
    expect(COLUMNS.filter((c) => c.kind === 'index')).toHaveLength(1)
    expect(blobColumns.length).toBeLessThanOrEqual(LIMITS.blobs)
    expect(doubleColumns.length).toBeLessThanOrEqual(LIMITS.doubles)
    // Every blob is cut to MAX_BLOB_BYTES, so no point can pass the 16 KB of blobs.
    expect(blobColumns.length * MAX_BLOB_BYTES).toBeLessThanOrEqual(LIMITS.blobsTotalBytes)
    for (const kind of ['blob', 'double'] as const) {
      const names = COLUMNS.filter((c) => c.kind === kind).map((c) => c.name)
      expect(new Set(names).size).toBe(names.length)
    }
  })

  it('cuts long values at a character boundary, within the limits', () => {
    const point = dataPoint({
      model: 'm'.repeat(60) + 'é'.repeat(40),
      reason: '€'.repeat(2_000),
      version: '1',
      load_ms: Number.NaN,
      rows: Infinity,
    })
    const fields = read(point)
    expect(fields.index).toBe('m'.repeat(60) + 'é'.repeat(18)) // 60 + 36 = 96 bytes
    expect(fields.reason).toBe('€'.repeat(341)) // 1,023 bytes: a 342nd would pass 1,024
    expect([fields.load_ms, fields.rows]).toEqual([0, 0])
  })

  it('is the table docs/analytics.md shows', () => {
    const table = /<!-- schema:start -->\n([\s\S]*?)\n<!-- schema:end -->/.exec(doc)
    expect(
      table,
      'docs/analytics.md has the schema between <!-- schema:start --> and <!-- schema:end -->',
    ).not.toBeNull()
    expect(table![1]).toBe(schemaTable())
  })

  it("is what the queries read: every alias of a column is that column's name, and every count is weighted", () => {
    const files = Object.entries(queries)
    expect(files.length).toBeGreaterThanOrEqual(6)
    const byColumn = new Map(COLUMNS.map((c) => [sqlName(c), c.name]))
    for (const [file, sql] of files) {
      expect(doc, `docs/analytics.md shows ${file}`).toContain(sql.trim())
      expect(sql, file).toContain('_sample_interval')
      expect(sql, `${file} counts rows unweighted`).not.toMatch(/count\(/i)
      for (const [, column, alias] of sql.matchAll(/\b((?:blob|double|index)\d+)\s+AS\s+(\w+)/gi)) {
        expect(byColumn.get(column!), `${file}: ${column}`).toBe(alias)
      }
      for (const [column] of sql.matchAll(/\b(?:blob|double|index)\d+\b/g))
        expect(byColumn.has(column), `${file}: ${column} is not a column`).toBe(true)
    }
  })
})
