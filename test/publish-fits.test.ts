/**
 * Publishing what fits (issue 22, item 8): the cron validates an R2 candidate in the isolate that
 * serves the model, beside the serving version when both fit and instead of its idle copy when they
 * do not, so a MobileNet-sized version lands; and what was refused or deferred shows in the status
 * APIs, not only in the log.
 */
import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it } from 'vitest'
import { isolate, resetIsolate } from '../src/isolate'
import { readPointer } from '../src/repository/pointer'
import { tf } from '../src/runtime/tf'
import { guardedBackend, isAllocationFailure } from '../src/runtime/wasm-guard'
import { call } from './support/helpers'
import { emptyBucket, irisFiles, publish } from './support/r2-helpers'
import { fragmentHeap, freshWasmIsolate } from './support/wasm-helpers'

const MOBILENET = 'nsfw-mobilenet-v2'

/** A bundled version's files, as publish-model would upload them: model.json and every shard it names. */
async function bundledFiles(name: string, version: number): Promise<Record<string, ArrayBuffer>> {
  const get = async (path: string) => {
    const res = await env.ASSETS.fetch(`https://a/${name}/${version}/${path}`)
    expect(res.status, `${name}/${version}/${path}`).toBe(200)
    return res.arrayBuffer()
  }
  const modelJson = await get('model.json')
  const json = JSON.parse(new TextDecoder().decode(modelJson)) as { weightsManifest: { paths: string[] }[] }
  const files: Record<string, ArrayBuffer> = { 'model.json': modelJson }
  for (const path of json.weightsManifest.flatMap((g) => g.paths)) files[path] = await get(path)
  return files
}

async function pointerModel(name: string) {
  const read = await readPointer(env.MODELS)
  if (read === 'unchanged') throw new Error('unreachable')
  return read.pointer.models[name]
}

const MiB = 1024 * 1024

const status = async (name: string) =>
  (await call(`/v1/models/${name}`)).json<{
    model_version_status: { version: string; state: string; status: { error_code: string; error_message: string } }[]
  }>()

beforeEach(async () => {
  resetIsolate()
  await emptyBucket(env.MODELS)
})

describe('a MobileNet-sized candidate', () => {
  // On a known heap: a fresh wasm instance, whatever files ran before in this worker.
  freshWasmIsolate()

  it('is validated in the isolate serving version 1, in the room of its idle copy, and published', async () => {
    // Version 1 serves here first: loaded, idle, holding its weights and kernel state.
    const v1 = await call(`/v1/models/${MOBILENET}:predict`, {
      method: 'POST',
      body: JSON.stringify({ instances: [Array.from({ length: 224 }, () => Array(224).fill([0.5, 0.5, 0.5]))] }),
    })
    expect(v1.status, await v1.clone().text()).toBe(200)
    expect(
      isolate()
        .cache.list()
        .map((r) => r.key),
    ).toEqual([`${MOBILENET}/1`])
    await publish(env.MODELS, MOBILENET, 2, await bundledFiles(MOBILENET, 1))

    const report = (await isolate().maintain(env)).publish!
    expect(report.errors).toEqual([])
    expect(report.rejected).toEqual([])
    expect(report.accepted).toEqual([`${MOBILENET}/2`])
    expect((await pointerModel(MOBILENET))?.current).toBe(2)
    const served = await call(`/v1/models/${MOBILENET}/versions/2`)
    expect(served.status, await served.clone().text()).toBe(200)
    // Loaded where it was validated: the validation's measurement counts, warmup runs one row (no 2-row run).
    const v2 = isolate()
      .status(env)
      .models.find((m) => m.key === `${MOBILENET}/2`)!
    expect(v2.footprint!.measured).toMatch(/^(heap|warmup)-1/)
    expect(v2.timings!.warmup2Ms).toBeUndefined()
  })
})

describe('a MobileNet-sized candidate on a fragmented heap', () => {
  freshWasmIsolate()

  it('is validated on a rebuilt heap and published, not deferred until the isolate dies', async () => {
    const name = 'fragmented-mobilenet'
    await publish(env.MODELS, name, 1, await bundledFiles(MOBILENET, 1))
    const { freeBytes, largestFreeBytes, release } = fragmentHeap()
    const before = guardedBackend()
    try {
      // Room for the candidate in all, in pieces smaller than the blocks its warmup needs (4.6 and 9.4 MiB).
      expect(freeBytes).toBeGreaterThan(60 * MiB)
      expect(largestFreeBytes).toBeLessThanOrEqual(4 * MiB)
      const report = (await isolate().maintain(env)).publish!
      expect(report.errors).toEqual([])
      expect(report.rejected).toEqual([])
      expect(report.accepted).toEqual([`${name}/1`])
    } finally {
      release()
    }
    // The heap was rebuilt: a new instance, and readiness is back.
    expect(guardedBackend()).toBeDefined()
    // As booleans: a failing toBe would print the backend, wasm heap and all (tens of seconds, or the pool's heap).
    expect(guardedBackend() !== before, 'a new backend').toBe(true)
    expect((await call('/v2/health/ready')).status).toBe(200)
    expect((await pointerModel(name))?.current).toBe(1)
    const served = await call(`/v1/models/${name}:predict`, {
      method: 'POST',
      body: JSON.stringify({ instances: [Array.from({ length: 224 }, () => Array(224).fill([0.5, 0.5, 0.5]))] }),
    })
    expect(served.status, await served.clone().text()).toBe(200)
  })
})

describe('versions that are not served', () => {
  freshWasmIsolate()

  it("show a refused version's reason in GET /v1/models/<name> and in the v2 metadata", async () => {
    // Iris's files under the MobileNet's name: a signature change the manifest does not declare.
    await publish(env.MODELS, MOBILENET, 3, await irisFiles())
    const report = (await isolate().maintain(env)).publish!
    expect(report.rejected).toEqual([
      {
        model: `${MOBILENET}/3`,
        reason: expect.stringMatching(
          /^its signature differs from version 1: input 'input_1' is gone; input 'features' is new; output 'dense_3' is gone; output 'species' is new; /,
        ),
      },
    ])
    // Compared with version 1's signature as the index holds it (a layers model's, built by tf.js): version 1 not loaded for it.
    expect(isolate().status(env).counters.loads).toBe(0)
    const { model_version_status } = await status(MOBILENET)
    expect(model_version_status).toContainEqual({
      version: '3',
      state: 'END',
      status: {
        error_code: 'FAILED_PRECONDITION',
        error_message: expect.stringMatching(/^rejected by validation: its signature differs from version 1: /),
      },
    })
    const metadata = await (await call(`/v2/models/${MOBILENET}`)).json<{ parameters: Record<string, unknown> }>()
    expect(metadata.parameters.unserved_versions).toEqual([
      { version: '3', state: 'rejected', reason: expect.stringMatching(/^its signature differs from version 1: /) },
    ])
  })

  it("show a deferred version's reason, and the next run accepts it", async () => {
    // R2 failing the manifest's read (the files themselves may come from the isolate's cache): no verdict, a deferral.
    await publish(env.MODELS, MOBILENET, 2, await bundledFiles(MOBILENET, 1))
    const down = new Proxy(env.MODELS, {
      get(target, prop) {
        if (prop !== 'get') return Reflect.get(target, prop).bind(target)
        return (key: string, options?: R2GetOptions) =>
          key.endsWith('/manifest.json') ? Promise.reject(new Error('R2 is down')) : target.get(key, options)
      },
    })
    const report = (await isolate().maintain({ ...env, MODELS: down } as Env)).publish!
    expect(isolate().status(env).counters.loads).toBe(0)
    expect(report.rejected).toEqual([])
    expect(report.errors).toEqual([`${MOBILENET}/2 not validated: R2 is down`])
    const deferred = await pointerModel(MOBILENET)
    expect(deferred?.rejected).toEqual({})
    expect(Object.keys(deferred?.deferred ?? {})).toEqual(['2'])
    const { model_version_status } = await status(MOBILENET)
    expect(model_version_status).toContainEqual({
      version: '2',
      state: 'START',
      status: { error_code: 'UNAVAILABLE', error_message: 'validation deferred: R2 is down' },
    })
    const metadata = await (await call(`/v2/models/${MOBILENET}`)).json<{ parameters: Record<string, unknown> }>()
    expect(metadata.parameters.unserved_versions).toEqual([{ version: '2', state: 'deferred', reason: 'R2 is down' }])

    expect((await isolate().maintain(env)).publish!.accepted).toEqual([`${MOBILENET}/2`])
    const published = await pointerModel(MOBILENET)
    expect(published?.deferred).toBeUndefined()
    expect(published?.current).toBe(2)
  })
})
