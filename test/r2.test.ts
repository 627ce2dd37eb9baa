import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it } from 'vitest'
import { isolate, resetIsolate } from '../src/isolate'
import { POINTER_KEY, readPointer } from '../src/repository/pointer'
import type { Pointer } from '../src/repository/pointer'
import { tf } from '../src/runtime/tf'
import { call, isolateOnFakeClock, post, runCron, SETOSA } from './support/helpers'
import { emptyBucket, irisFiles, irisWithBias, publish, publishElsewhere as publishFrom } from './support/r2-helpers'

const publishElsewhere = (bucket?: R2Bucket) => publishFrom(bindings, bucket)

// A model that lives only in the bucket. Each test file has its own storage, but other files'
// tests expect the bundled iris to be at version 1, so these tests leave `iris` alone.
const NAME = 'r2iris'
const bindings = { ...env, REFRESH_INTERVAL: '1' } as Env
const predictPath = `/v1/models/${NAME}:predict`
const predict = (path = predictPath) => post(path, { instances: [SETOSA] }, {}, bindings)

/** This isolate's view of the pointer. */
const pointerStatus = () => isolate().status(bindings).pointer

/** Lets `count` turns of the event loop pass: requests started this way overlap the background swap. */
async function turns(count: number) {
  for (let i = 0; i < count; i++) await new Promise((r) => setTimeout(r, 0))
}

async function pointer(): Promise<Pointer> {
  const read = await readPointer(env.MODELS)
  if (read === 'unchanged') throw new Error('unreachable')
  return read.pointer
}

/** Predictions of one response, with the version that made them. */
async function answer(res: Response) {
  expect(res.status).toBe(200)
  const body = await res.json<{ predictions: number[][] }>()
  return {
    version: res.headers.get('x-model-version'),
    cache: res.headers.get('x-model-cache'),
    top: body.predictions[0]!.indexOf(Math.max(...body.predictions[0]!)),
  }
}

// The clock of this isolate's state: REFRESH_INTERVAL passes when a test says so.
const clock = isolateOnFakeClock()
const intervalPasses = () => clock.advance(1100)

beforeEach(async () => {
  await emptyBucket(env.MODELS)
})

describe('an empty bucket', () => {
  it('changes nothing: bundled models serve as before, and no pointer is written', async () => {
    const res = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, bindings)
    expect(res.status).toBe(200)
    expect(res.headers.get('x-model-version')).toBe('1')
    await runCron(bindings)
    expect(await env.MODELS.head(POINTER_KEY)).toBeNull()
    expect((await call('/v1/models/nope', undefined, bindings)).status).toBe(404)
  })
})

describe('publishing to R2', () => {
  it('serves a version only once the cron handler has validated it', async () => {
    await publish(env.MODELS, NAME, 1, await irisFiles())
    expect((await predict()).status).toBe(404) // uploaded, not yet validated
    await runCron(bindings)
    const published = await pointer()
    expect(published.models[NAME]).toMatchObject({ current: 1, rejected: {} })
    expect(published.models[NAME]!.versions['1']!.files.map((f) => f.path)).toEqual([
      'model.json',
      'group1-shard1of1.bin',
    ])

    const res = await predict()
    expect(await answer(res)).toMatchObject({ version: '1', top: 0 })
    const status = await (await call(`/v1/models/${NAME}`, undefined, bindings)).json<any>()
    expect(status.model_version_status).toEqual([
      { version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
    ])
  })

  it('ignores a version whose manifest is not there yet (an upload in progress)', async () => {
    const files = await irisFiles()
    for (const [path, bytes] of Object.entries(files)) await env.MODELS.put(`${NAME}/1/${path}`, bytes)
    const report = await publishElsewhere()
    expect(report).toMatchObject({ accepted: [], rejected: [], published: false })
  })

  it('does not rewrite the pointer when nothing changed', async () => {
    await publish(env.MODELS, NAME, 1, await irisFiles())
    expect((await publishElsewhere()).published).toBe(true)
    const etag = (await env.MODELS.head(POINTER_KEY))!.etag
    expect((await publishElsewhere()).published).toBe(false)
    expect((await env.MODELS.head(POINTER_KEY))!.etag).toBe(etag)
  })
})

describe('a serving isolate following the pointer', () => {
  it('switches to a new version within REFRESH_INTERVAL, off the request path, warm before the switch', async () => {
    await publish(env.MODELS, NAME, 1, await irisFiles())
    await publishElsewhere()
    expect(await answer(await predict())).toMatchObject({ version: '1', top: 0 })

    await publish(env.MODELS, NAME, 2, await irisWithBias([0, 0, 50]))
    expect((await publishElsewhere()).accepted).toEqual([`${NAME}/2`])
    expect(await answer(await predict())).toMatchObject({ version: '1' }) // within the interval: no re-read

    intervalPasses()
    // This request is served by v1 and starts the re-read in waitUntil; call() waits for it.
    expect(await answer(await predict())).toMatchObject({ version: '1' })
    // v2 was loaded and warmed before the switch, so the first request on it is a hit.
    expect(await answer(await predict())).toMatchObject({ version: '2', cache: 'hit', top: 2 })
    const cache = isolate().cache
    expect(cache.list().map((r) => [r.key, r.state])).toEqual([[`${NAME}/2`, 'AVAILABLE']])
    expect(pointerStatus()).toMatchObject({ swaps: 1 })
  })

  it("loads what an isolate's first request asks for while it reads the pointer, and counts it as that request's miss", async () => {
    // A bucket whose pointer read answers only once the bundled iris is loading (or after 5 s, when it
    // never starts): the load runs beside the read, not after it.
    let loadingDuringRead = false
    const bucket = {
      get: async (key: string, options?: R2GetOptions) => {
        if (key === POINTER_KEY) {
          const deadline = Date.now() + 5_000
          while (!(loadingDuringRead = isolate().cache.status('iris/1') !== undefined) && Date.now() < deadline)
            await new Promise((r) => setTimeout(r, 5))
        }
        return env.MODELS.get(key, options)
      },
    } as unknown as R2Bucket
    const res = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, { ...bindings, MODELS: bucket })
    expect(await answer(res)).toMatchObject({ version: '1', cache: 'miss', top: 0 })
    expect(loadingDuringRead).toBe(true)
    expect(isolate().cache.counters).toMatchObject({ loads: 1, misses: 1, joins: 0 })
  })

  it('serves the version the pointer publishes when the first request loaded the bundled one meanwhile, which goes', async () => {
    // Only in this file's bucket, emptied before each test: other files' bundled iris stays at version 1.
    await publish(env.MODELS, 'iris', 2, await irisWithBias([0, 0, 50]))
    expect((await publishElsewhere()).accepted).toEqual(['iris/2'])
    const res = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, bindings)
    expect(await answer(res)).toMatchObject({ version: '2', top: 2 })
    const cache = isolate().cache
    // iris/1 was loaded while the pointer was read, then dropped: nothing addresses it any more.
    expect(cache.counters).toMatchObject({ loads: 2, drops: 1 })
    expect(cache.list().map((r) => [r.key, r.state])).toEqual([['iris/2', 'AVAILABLE']])
  })

  it('keeps requests in flight on the old version, disposes it after its last lease, and frees its memory', async () => {
    await publish(env.MODELS, NAME, 1, await irisFiles())
    await publishElsewhere()
    expect(await answer(await predict())).toMatchObject({ version: '1' })
    const oneVersion = tf.memory()
    const cache = isolate().cache

    const held = await isolate().lease(bindings, NAME) // a request still running on v1
    await publish(env.MODELS, NAME, 2, await irisWithBias([0, 0, 50]))
    await publishElsewhere()
    intervalPasses()
    // Many requests while the swap happens: every one succeeds and is answered by one version, its own.
    const responses = await Promise.all(Array.from({ length: 40 }, (_, i) => turns(i).then(() => predict())))
    const answers = await Promise.all(responses.map(answer))
    for (const a of answers) expect(a.top).toBe(a.version === '1' ? 0 : 2)
    expect(new Set(answers.map((a) => a.version))).toContain('1')
    expect(await answer(await predict())).toMatchObject({ version: '2' })

    expect(cache.list().find((r) => r.key === `${NAME}/1`)).toMatchObject({ state: 'RETIRED', leases: 1 })
    const disposalsBefore = cache.counters.disposals
    expect(held.lease.model.signature.inputs[0]!.shape).toEqual([-1, 4]) // still usable: not disposed
    held.lease.release()
    expect(cache.counters.disposals).toBe(disposalsBefore + 1)
    expect(cache.list().map((r) => r.key)).toEqual([`${NAME}/2`])
    expect(tf.memory()).toMatchObject({ numTensors: oneVersion.numTensors, numBytes: oneVersion.numBytes })
  })

  it('keeps serving the current version when the new one is deleted before this isolate loads it', async () => {
    await publish(env.MODELS, NAME, 1, await irisFiles())
    await publishElsewhere()
    expect(await answer(await predict())).toMatchObject({ version: '1' })
    await publish(env.MODELS, NAME, 2, await irisWithBias([0, 0, 50]))
    await publishElsewhere()
    await env.MODELS.delete(`${NAME}/2/group1-shard1of1.bin`) // gone after validation, before the swap
    intervalPasses()
    expect(await answer(await predict())).toMatchObject({ version: '1' })
    expect(pointerStatus().lastError).toMatch(
      /kept the current version, the new one failed to load: .*r2iris\/2\/group1-shard1of1\.bin is missing/,
    )
    expect(await answer(await predict())).toMatchObject({ version: '1', cache: 'hit' })
    expect(
      isolate()
        .cache.list()
        .map((r) => r.key),
    ).toEqual([`${NAME}/1`]) // nothing half-loaded
  })
})

describe('validation', () => {
  beforeEach(async () => {
    await publish(env.MODELS, NAME, 1, await irisFiles())
    await publishElsewhere()
  })

  it.each([
    [
      'a corrupted shard',
      { damage: (p: string, b: ArrayBuffer) => (p.endsWith('.bin') ? ((new Uint8Array(b)[7]! ^= 0xff), b) : b) },
      /r2iris\/3\/group1-shard1of1\.bin is corrupted: sha256 [0-9a-f]{12}…, the manifest records [0-9a-f]{12}…/,
    ],
    [
      'a truncated shard',
      { damage: (p: string, b: ArrayBuffer) => (p.endsWith('.bin') ? b.slice(0, 100) : b) },
      /r2iris\/3\/group1-shard1of1\.bin is truncated: 100 bytes, the manifest records 524/,
    ],
    [
      'a changed signature',
      {},
      /its signature differs from version 1: input 'features' shape \[-1, 4\] → \[-1, 5\].*--signature-change/,
      5,
    ],
  ] as [string, { damage?: (p: string, b: ArrayBuffer) => ArrayBuffer }, RegExp, number?][])(
    'rejects %s with the reason in the status, and keeps serving',
    async (_what, options, reason, inputs) => {
      let files = await irisFiles()
      if (inputs) files = await widenedIris(inputs)
      await publish(env.MODELS, NAME, 3, files, options)
      const report = await publishElsewhere()
      expect(report.rejected).toEqual([{ model: `${NAME}/3`, reason: expect.stringMatching(reason) }])
      expect((await pointer()).models[NAME]).toMatchObject({
        current: 1,
        rejected: { '3': { reason: expect.stringMatching(reason) } },
      })
      expect(Object.keys((await pointer()).models[NAME]!.versions)).toEqual(['1'])

      expect(await answer(await predict())).toMatchObject({ version: '1' })
      const status = await (await call(`/v1/models/${NAME}`, undefined, bindings)).json<any>()
      expect(status.model_version_status[1]).toMatchObject({
        version: '3',
        state: 'END',
        status: { error_code: 'FAILED_PRECONDITION', error_message: expect.stringMatching(reason) },
      })
      const v3 = await (await call(`/v1/models/${NAME}/versions/3`, undefined, bindings)).json<any>()
      expect(v3.model_version_status[0].status.error_message).toMatch(reason)
      const res = await predict(`/v1/models/${NAME}/versions/3:predict`)
      expect(res.status).toBe(404)
      expect((await res.json<any>()).error).toMatch(/version 3 of model 'r2iris' was rejected/)
      // Not retried until it is published again.
      expect((await publishElsewhere()).rejected).toEqual([])
    },
  )

  it('accepts a changed signature that the manifest declares', async () => {
    await publish(env.MODELS, NAME, 3, await widenedIris(5), { signatureChange: true })
    expect((await publishElsewhere()).accepted).toEqual([`${NAME}/3`])
  })

  it('rejects a manifest that does not parse, and a version number the bundled assets already have', async () => {
    await env.MODELS.put(`${NAME}/4/manifest.json`, '{"files": 3}')
    await publish(env.MODELS, 'iris', 1, await irisFiles())
    const report = await publishElsewhere()
    expect(report.rejected).toEqual([
      { model: 'iris/1', reason: 'version 1 is bundled in the static assets; publish under another number' },
      { model: `${NAME}/4`, reason: expect.stringMatching(/r2iris\/4\/manifest\.json is invalid/) },
    ])
  })

  it('refuses other files uploaded under an accepted number, says to publish a new one, and keeps refusing them', async () => {
    await publish(env.MODELS, NAME, 2, await irisWithBias([0, 0, 50]))
    expect((await publishElsewhere()).accepted).toEqual([`${NAME}/2`])
    // The same number again, other weights: two models under one version if it were accepted.
    await publish(env.MODELS, NAME, 2, await irisWithBias([0, 50, 0]))
    const reason =
      'version 2 was accepted before with other files, and an accepted version never changes (serving isolates keep its weights, the prediction cache its answers): publish the new files as a new number, e.g. 3'
    const report = await publishElsewhere()
    expect(report).toMatchObject({ accepted: [], removed: [`${NAME}/2`], rejected: [{ model: `${NAME}/2`, reason }] })
    expect((await pointer()).models[NAME]).toMatchObject({ current: 1, rejected: { '2': { reason, replaced: true } } })
    // Uploaded over once more: still refused, never validated as a fresh candidate.
    await publish(env.MODELS, NAME, 2, await irisWithBias([50, 0, 0]))
    expect(await publishElsewhere()).toMatchObject({ accepted: [], rejected: [{ model: `${NAME}/2`, reason }] })
    expect(Object.keys((await pointer()).models[NAME]!.versions)).toEqual(['1'])
  })

  it('withdraws a published version that was deleted from the bucket', async () => {
    await publish(env.MODELS, NAME, 2, await irisWithBias([0, 0, 50]))
    await publishElsewhere()
    await env.MODELS.delete(`${NAME}/2/manifest.json`)
    expect((await publishElsewhere()).removed).toEqual([`${NAME}/2`])
    expect((await pointer()).models[NAME]!.current).toBe(1)
  })
})

/** Iris with `inputs` input features instead of 4: a signature change. */
async function widenedIris(inputs: number): Promise<Record<string, ArrayBuffer>> {
  const files = await irisFiles()
  const json = JSON.parse(new TextDecoder().decode(files['model.json']))
  const text = JSON.stringify(json)
    .replace(/"batch_input_shape":\[null,4\]/, `"batch_input_shape":[null,${inputs}]`)
    .replace(/"shape":\[4,16\]/, `"shape":[${inputs},16]`)
  const shard = files['group1-shard1of1.bin']!
  const bigger = new Uint8Array(shard.byteLength + (inputs - 4) * 16 * 4)
  bigger.set(new Uint8Array(shard), (inputs - 4) * 16 * 4)
  return { 'model.json': new TextEncoder().encode(text).buffer as ArrayBuffer, 'group1-shard1of1.bin': bigger.buffer }
}

describe('version policy and labels', () => {
  beforeEach(async () => {
    await publish(env.MODELS, NAME, 1, await irisFiles())
    await publish(env.MODELS, NAME, 2, await irisWithBias([0, 0, 50]))
  })

  const config = async (value: unknown) => {
    await env.MODELS.put(`${NAME}/config.json`, JSON.stringify(value))
    await runCron(bindings)
  }

  it('serves the latest by default, and each label at /labels/{l}', async () => {
    await config({ version_labels: { stable: 1, canary: 2 } })
    expect(await answer(await predict())).toMatchObject({ version: '2' })
    expect(await answer(await predict(`/v1/models/${NAME}/labels/stable:predict`))).toMatchObject({
      version: '1',
      top: 0,
    })
    expect(await answer(await predict(`/v1/models/${NAME}/labels/canary:predict`))).toMatchObject({
      version: '2',
      top: 2,
    })
    const status = await (await call(`/v1/models/${NAME}/labels/stable`, undefined, bindings)).json<any>()
    expect(status.model_version_status[0]).toMatchObject({ version: '1', state: 'AVAILABLE' })
    const metadata = await (await call(`/v1/models/${NAME}/labels/canary/metadata`, undefined, bindings)).json<any>()
    expect(metadata.model_spec).toMatchObject({ name: NAME, version: '2' })

    const unknown = await predict(`/v1/models/${NAME}/labels/beta:predict`)
    expect(unknown.status).toBe(404)
    expect((await unknown.json<any>()).error).toBe("model 'r2iris' has no label 'beta'; labels: stable, canary")
    expect((await call(`/v1/models/${NAME}/labels/stable:predict`, undefined, bindings)).status).toBe(405)
    expect((await predict(`/v1/models/${NAME}/labels/bad!:predict`)).status).toBe(400)
  })

  it('pins a version with version_policy: specific, and serves no other', async () => {
    await config({ version_policy: { specific: { versions: [1] } } })
    expect(await answer(await predict())).toMatchObject({ version: '1' })
    const other = await predict(`/v1/models/${NAME}/versions/2:predict`)
    expect(other.status).toBe(404)
    expect((await other.json<any>()).error).toBe("model 'r2iris' has no version 2; versions: 1")
    const v2 = await call(`/v2/models/${NAME}`, undefined, bindings)
    expect((await v2.json<any>()).versions).toEqual(['1'])
  })

  it('keeps the previous config when the bucket has an invalid one', async () => {
    await config({ version_labels: { stable: 1 } })
    await env.MODELS.put(`${NAME}/config.json`, JSON.stringify({ version_label: { stable: 2 } }))
    const report = await publishElsewhere()
    expect(report.errors[0]).toMatch(/r2iris\/config\.json is invalid, kept the previous one/)
    expect((await pointer()).models[NAME]!.config).toEqual({ version_labels: { stable: 1 } })
  })
})

describe('an unreachable or slow bucket', () => {
  const failing = (behaviour: 'throw' | 'hang') => {
    const fail = () => (behaviour === 'throw' ? Promise.reject(new Error('R2 is down')) : new Promise<never>(() => {}))
    return { get: fail, head: fail, list: fail, put: fail, delete: fail } as unknown as R2Bucket
  }

  it('changes nothing for a serving isolate: the applied version keeps serving', async () => {
    await publish(env.MODELS, NAME, 1, await irisFiles())
    await publishElsewhere()
    expect(await answer(await predict())).toMatchObject({ version: '1' })
    intervalPasses()
    const down = { ...bindings, MODELS: failing('throw') } as Env
    const res = await post(predictPath, { instances: [SETOSA] }, {}, down)
    expect(await answer(res)).toMatchObject({ version: '1', cache: 'hit' })
    expect(pointerStatus().lastError).toMatch(/pointer not read, serving what this isolate has: R2 is down/)
  })

  it('serves bundled models when the first read of the pointer times out', async () => {
    // A bucket that never answers, and a short POINTER_READ_TIMEOUT_MS so the test does not wait the default 2 s.
    const slow = { ...bindings, MODELS: failing('hang'), POINTER_READ_TIMEOUT_MS: '20' } as Env
    const res = await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, slow)
    expect(res.status).toBe(200)
    expect(pointerStatus().lastError).toMatch(/did not answer within 20 ms/)
  })

  it('makes the cron handler publish nothing, and say why', async () => {
    const report = await isolate().maintain({ ...bindings, MODELS: failing('throw') } as Env)
    expect(report.publishError).toBe('R2 is down')
    expect(report.models).toBeGreaterThan(0)
  })
})
