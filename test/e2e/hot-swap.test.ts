/**
 * Refresh across isolates, for real: the deploy bundle served twice (scripts/tools/launch.mjs startBundle:
 * two workerd processes, so two isolates that share no module state) over one persisted R2 store.
 * One only fires the cron; the other only serves. v2 is published into the bucket during the test;
 * the serving instance must switch to it on its own once REFRESH_INTERVAL has passed, while requests
 * keep flowing — none failing, each answered by one version — and end up holding exactly one
 * version's tensors. The switch happens in the background, so the test waits for what it can see
 * (X-Model-Version, /admin/cache), each wait bounded by a deadline, never for a fixed time.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { publishVersion } from '../../scripts/tools/publish-model.mjs'
import { sharedBundle, startBundle } from './support/servers'
import type { BundleServer } from './support/servers'
import type { Bundle } from '../../scripts/tools/launch.mjs'
import { bearer, get, post, SETOSA } from './support/http'
import { irisVariant } from './support/models'

const TOKEN = 'hot-swap-admin'
const REFRESH_INTERVAL_S = 1
/** Concurrent clients during the swap. */
const CLIENTS = 8
/** How many v2 answers each client waits for before it stops. */
const V2_PER_CLIENT = 5
/** The most the switch may take before the test fails (only a bound: the test waits for the switch, not for a time). */
const SWITCH_DEADLINE_MS = 60_000
/** The most a background step (a lease ending, a pointer re-read) may take before the test fails. */
const SETTLE_MS = 30_000

/** The parts of miniflare's R2 proxy used here (its own types need the Workers type library). */
interface Bucket {
  get(key: string): Promise<{ etag: string; text(): Promise<string>; arrayBuffer(): Promise<ArrayBuffer> } | null>
  put(key: string, value: Uint8Array | string): Promise<unknown>
}
const bucketOf = async (server: BundleServer) => (await server.miniflare.getR2Bucket('MODELS')) as unknown as Bucket

let dir: string
let bundle: Bundle
let cron: BundleServer
let serving: BundleServer

async function predict(server: BundleServer) {
  const started = performance.now()
  try {
    const res = await post<{ predictions?: number[][] }>(`${server.url}/v1/models/iris:predict`, {
      instances: [SETOSA],
    })
    const row = res.json?.predictions?.[0] ?? []
    return {
      status: res.status,
      version: res.headers.get('x-model-version'),
      top: row.indexOf(Math.max(...row)),
      started,
      ended: performance.now(),
    }
  } catch (error) {
    return { status: 0, version: null, top: -1, started, ended: performance.now(), error: String(error) }
  }
}

async function adminCache(server: BundleServer) {
  const res = await get<{
    models: { key: string; state: string; leases: number; bytes: number; loadedAt?: number }[]
    counters: Record<string, number>
    memory: { numTensors: number; numBytes: number }
    pointer: { etag: string | null; readAt: number; swaps: number; lastError?: string }
  }>(`${server.url}/admin/cache`, bearer(TOKEN))
  expect(res.status, res.text).toBe(200)
  return res.json
}

/** Runs the cron in its own instance and returns the pointer it published, with its etag. */
async function fireCron() {
  expect(await cron.scheduled()).toBe('ok')
  const object = (await (await bucketOf(cron)).get('_pointer.json'))!
  return { etag: object.etag, pointer: JSON.parse(await object.text()) }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warmserve-hot-swap-'))
  bundle = await sharedBundle()
  const state = join(dir, 'state') // the one store both instances share
  // One at a time: two workerd processes opening the shared store at the same moment can find it locked.
  cron = await startBundle({ bundle, persistDir: state })
  serving = await startBundle({
    bundle,
    persistDir: state,
    vars: { REFRESH_INTERVAL: String(REFRESH_INTERVAL_S), ADMIN_TOKEN: TOKEN },
  })
})

afterAll(async () => {
  await Promise.allSettled([cron?.stop(), serving?.stop()])
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('hot model updates across isolates', () => {
  it('switches a separate serving isolate to v2 on its own after the interval, with no failed request and one version of memory after', async () => {
    const first = await predict(serving)
    expect(first).toMatchObject({ status: 200, version: '1', top: 0 })
    const before = await adminCache(serving)
    expect(before.models.map((m) => [m.key, m.state])).toEqual([['iris/1', 'AVAILABLE']])

    await publishVersion(await bucketOf(cron), { dir: irisVariant(dir, 'v2', [0, 0, 50]), name: 'iris', version: 2 })
    const { pointer } = await fireCron()
    expect(pointer.models.iris).toMatchObject({ current: 2, rejected: {} })
    // The cron ran in the other instance: the serving one has not been touched by it.
    expect((await adminCache(serving)).models.map((m) => m.key)).toEqual(['iris/1'])

    // Clients keep predicting until every one of them has seen v2 a few times: the switch happens in the
    // background (a request past the interval starts the re-read), so they wait for it, however long
    // the machine takes, up to a deadline that only bounds a failing run.
    const results: Awaited<ReturnType<typeof predict>>[] = []
    const deadline = performance.now() + SWITCH_DEADLINE_MS
    const client = async () => {
      let seen = 0
      while (seen < V2_PER_CLIENT && performance.now() < deadline) {
        const r = await predict(serving)
        results.push(r)
        if (r.version === '2') seen++
      }
    }
    await Promise.all(Array.from({ length: CLIENTS }, client))

    const failures = results.filter((r) => r.status !== 200)
    expect(failures).toEqual([])
    for (const r of results) expect(r.top).toBe(r.version === '1' ? 0 : 2) // each response wholly from one version
    const firstV2 = Math.min(...results.filter((r) => r.version === '2').map((r) => r.ended))
    expect(Number.isFinite(firstV2)).toBe(true)
    expect(results.slice(-CLIENTS * 2).every((r) => r.version === '2')).toBe(true)

    // The old version goes once its last lease ends, and memory is one version's again.
    const settled = async () => {
      const cache = await adminCache(serving)
      return { models: cache.models.map((m) => [m.key, m.state, m.leases]), disposals: cache.counters.disposals }
    }
    await expect
      .poll(settled, { timeout: SETTLE_MS, interval: 50 })
      .toEqual({ models: [['iris/2', 'AVAILABLE', 0]], disposals: before.counters.disposals! + 1 })
    const after = await adminCache(serving)
    expect(after.models.map((m) => [m.key, m.state, m.leases])).toEqual([['iris/2', 'AVAILABLE', 0]])
    expect(after.memory).toEqual(before.memory)
    expect(after.pointer.swaps).toBe(1)

    const loaded = after.models[0]!.loadedAt!
    const figures = {
      swapMs: loaded - after.pointer.readAt, // pointer re-read → v2 loaded and warm, in the serving isolate
      requests: results.length,
      servedDuringSwap: results.filter(
        (r) => r.ended >= firstV2 - (loaded - after.pointer.readAt) && r.ended <= firstV2,
      ).length,
      v1: results.filter((r) => r.version === '1').length,
      v2: results.filter((r) => r.version === '2').length,
      failures: failures.length,
      before: before.memory,
      after: after.memory,
    }
    console.log(`HOT-SWAP FIGURES ${JSON.stringify(figures)}`)
  })

  it('rejects a corrupted v3 with the reason in the status, and v2 keeps serving', async () => {
    const bucket = await bucketOf(cron)
    await publishVersion(bucket, { dir: irisVariant(dir, 'v3', [50, 0, 0]), name: 'iris', version: 3 })
    const shard = new Uint8Array(await (await bucket.get('iris/3/group1-shard1of1.bin'))!.arrayBuffer())
    shard[100]! ^= 0xff // one flipped byte after the manifest recorded the hash
    await bucket.put('iris/3/group1-shard1of1.bin', shard)
    const published = await fireCron()
    expect(published.pointer.models.iris.current).toBe(2)
    expect(published.pointer.models.iris.rejected['3'].reason).toMatch(
      /iris\/3\/group1-shard1of1\.bin is corrupted: sha256/,
    )

    // Predict until the serving isolate has applied that pointer (a request past the interval starts
    // the re-read in the background); every answer meanwhile, and five after, is v2's.
    const answers: Awaited<ReturnType<typeof predict>>[] = []
    const appliedEtag = async () => {
      answers.push(await predict(serving))
      return (await adminCache(serving)).pointer.etag
    }
    await expect.poll(appliedEtag, { timeout: SETTLE_MS, interval: 100 }).toBe(published.etag)
    for (let i = 0; i < 5; i++) answers.push(await predict(serving))
    for (const answer of answers) expect(answer).toMatchObject({ status: 200, version: '2', top: 2 })
    const status = await get<{ model_version_status: unknown }>(`${serving.url}/v1/models/iris`)
    expect(status.status, status.text).toBe(200)
    expect(status.json.model_version_status).toEqual([
      { version: '2', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
      {
        version: '3',
        state: 'END',
        status: {
          error_code: 'FAILED_PRECONDITION',
          error_message: expect.stringMatching(/rejected by validation: .*corrupted/),
        },
      },
    ])
    expect((await adminCache(serving)).models.map((m) => m.key)).toEqual(['iris/2'])
  })
})
