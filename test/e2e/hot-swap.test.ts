/**
 * Refresh across isolates, for real: two Miniflare instances (two workerd processes, so two isolates
 * that share no module state) over one persisted R2 store. One only fires the cron; the other only
 * serves. v2 is published into the bucket during the test; the serving instance must switch to it on
 * its own, within REFRESH_INTERVAL, while requests keep flowing — none failing, each answered by one
 * version — and end up holding exactly one version's tensors.
 */
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { convertV4MiniflareOptions, Miniflare } from 'miniflare'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { publishVersion } from '../../scripts/publish-model.mjs'

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
const TOKEN = 'hot-swap-admin'
const SETOSA = [5.1, 3.5, 1.4, 0.2]
const REFRESH_INTERVAL_S = 1
/** Concurrent clients during the swap, and the bounds of the run. */
const CLIENTS = 8
const MAX_REQUESTS = 600
const DEADLINE_MS = 20_000

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The parts of miniflare's R2 and Worker proxies used here (their own types need the Workers type library). */
interface Bucket {
  get(key: string): Promise<{ text(): Promise<string>; arrayBuffer(): Promise<ArrayBuffer> } | null>
  put(key: string, value: Uint8Array | string): Promise<unknown>
}
const bucketOf = async (mf: Miniflare) => (await mf.getR2Bucket('MODELS')) as unknown as Bucket
const workerOf = async (mf: Miniflare) => (await mf.getWorker()) as unknown as { scheduled(o: { cron: string }): Promise<{ outcome: string }> }

let dir: string
let cron: Miniflare
let serving: Miniflare

/** The Worker as `wrangler deploy` would upload it. */
function bundle(out: string) {
  const result = spawnSync('wrangler', ['deploy', '--dry-run', '--outdir', out], {
    cwd: ROOT,
    env: { ...process.env, PATH: `${join(ROOT, 'node_modules/.bin')}${delimiter}${process.env.PATH}` },
    encoding: 'utf8',
    timeout: 120_000,
  })
  if (result.status !== 0) throw new Error(`wrangler deploy --dry-run failed:\n${result.stdout}\n${result.stderr}`)
  const wasm = readdirSync(out).filter((f) => f.endsWith('.wasm'))
  return [{ type: 'ESModule' as const, path: join(out, 'index.js') }, ...wasm.map((f) => ({ type: 'CompiledWasm' as const, path: join(out, f) }))]
}

function instance(modules: ReturnType<typeof bundle>, bindings: Record<string, string>) {
  const toml = readFileSync(join(ROOT, 'wrangler.toml'), 'utf8')
  return new Miniflare(
    convertV4MiniflareOptions({
      modulesRoot: join(dir, 'out'),
      modules,
      compatibilityDate: /^compatibility_date = "(.+)"$/m.exec(toml)![1]!,
      assets: { directory: join(ROOT, 'model-assets'), binding: 'ASSETS', routerConfig: { has_user_worker: true, invoke_user_worker_ahead_of_assets: true } },
      r2Buckets: { MODELS: /bucket_name = "(.+)"/.exec(toml)![1]! },
      resourcePersistencePath: join(dir, 'state'), // the one store both instances share
      bindings,
    }),
  )
}

/** Iris with its output bias replaced, as a model folder: the same signature, other answers. */
function irisVariant(name: string, bias: [number, number, number]): string {
  const folder = join(dir, name)
  mkdirSync(folder)
  copyFileSync(join(ROOT, 'model-assets/iris/1/model.json'), join(folder, 'model.json'))
  const shard = readFileSync(join(ROOT, 'model-assets/iris/1/group1-shard1of1.bin'))
  const weights = new Float32Array(shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength))
  weights.set(bias, weights.length - 3) // species/bias, the shard's last weight
  writeFileSync(join(folder, 'group1-shard1of1.bin'), new Uint8Array(weights.buffer))
  return folder
}

async function predict(mf: Miniflare) {
  const started = performance.now()
  try {
    const res = await mf.dispatchFetch('http://localhost/v1/models/iris:predict', { method: 'POST', body: JSON.stringify({ instances: [SETOSA] }) })
    const body = (await res.json()) as { predictions?: number[][] }
    const row = body.predictions?.[0] ?? []
    return { status: res.status, version: res.headers.get('x-model-version'), top: row.indexOf(Math.max(...row)), started, ended: performance.now() }
  } catch (error) {
    return { status: 0, version: null, top: -1, started, ended: performance.now(), error: String(error) }
  }
}

async function adminCache(mf: Miniflare) {
  const res = await mf.dispatchFetch('http://localhost/admin/cache', { headers: { Authorization: `Bearer ${TOKEN}` } })
  return (await res.json()) as {
    models: { key: string; state: string; leases: number; bytes: number; loadedAt?: number }[]
    counters: Record<string, number>
    memory: { numTensors: number; numBytes: number }
    pointer: { etag: string | null; readAt: number; swaps: number; lastError?: string }
  }
}

async function fireCron() {
  const result = await (await workerOf(cron)).scheduled({ cron: '*/5 * * * *' })
  expect(result.outcome).toBe('ok')
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warmserve-hot-swap-'))
  const modules = bundle(join(dir, 'out'))
  // One at a time: two workerd processes opening the shared store at the same moment can find it locked.
  cron = instance(modules, {})
  await cron.ready
  serving = instance(modules, { REFRESH_INTERVAL: String(REFRESH_INTERVAL_S), ADMIN_TOKEN: TOKEN })
  await serving.ready
})

afterAll(async () => {
  await Promise.allSettled([cron?.dispose(), serving?.dispose()])
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('hot model updates across isolates', () => {
  it('switches a separate serving isolate to v2 within the interval, with no failed request and one version of memory after', async () => {
    const first = await predict(serving)
    expect(first).toMatchObject({ status: 200, version: '1', top: 0 })
    const before = await adminCache(serving)
    expect(before.models.map((m) => [m.key, m.state])).toEqual([['iris/1', 'AVAILABLE']])

    const bucket = await bucketOf(cron)
    await publishVersion(bucket, { dir: irisVariant('v2', [0, 0, 50]), name: 'iris', version: 2 })
    await fireCron()
    const pointer = JSON.parse(await (await bucket.get('_pointer.json'))!.text())
    expect(pointer.models.iris).toMatchObject({ current: 2, rejected: {} })
    // The cron ran in the other instance: the serving one has not been touched by it.
    expect((await adminCache(serving)).models.map((m) => m.key)).toEqual(['iris/1'])

    // Clients keep predicting until every one of them has seen v2 a few times, within bounds.
    const results: Awaited<ReturnType<typeof predict>>[] = []
    const deadline = performance.now() + DEADLINE_MS
    const client = async () => {
      let seen = 0
      while (seen < 5 && results.length < MAX_REQUESTS && performance.now() < deadline) {
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

    // The old version went once its last lease ended, and memory is one version's again.
    await sleep(50)
    const after = await adminCache(serving)
    expect(after.models.map((m) => [m.key, m.state, m.leases])).toEqual([['iris/2', 'AVAILABLE', 0]])
    expect(after.counters.disposals).toBe(before.counters.disposals! + 1)
    expect(after.memory).toEqual(before.memory)
    expect(after.pointer.swaps).toBe(1)

    const loaded = after.models[0]!.loadedAt!
    const figures = {
      swapMs: loaded - after.pointer.readAt, // pointer re-read → v2 loaded and warm, in the serving isolate
      requests: results.length,
      servedDuringSwap: results.filter((r) => r.ended >= firstV2 - (loaded - after.pointer.readAt) && r.ended <= firstV2).length,
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
    await publishVersion(bucket, { dir: irisVariant('v3', [50, 0, 0]), name: 'iris', version: 3 })
    const shard = new Uint8Array(await (await bucket.get('iris/3/group1-shard1of1.bin'))!.arrayBuffer())
    shard[100]! ^= 0xff // one flipped byte after the manifest recorded the hash
    await bucket.put('iris/3/group1-shard1of1.bin', shard)
    await fireCron()
    const pointer = JSON.parse(await (await bucket.get('_pointer.json'))!.text())
    expect(pointer.models.iris.current).toBe(2)
    expect(pointer.models.iris.rejected['3'].reason).toMatch(/iris\/3\/group1-shard1of1\.bin is corrupted: sha256/)

    await sleep(REFRESH_INTERVAL_S * 1000 + 100)
    for (let i = 0; i < 5; i++) expect(await predict(serving)).toMatchObject({ status: 200, version: '2', top: 2 })
    const status = (await (await serving.dispatchFetch('http://localhost/v1/models/iris')).json()) as any
    expect(status.model_version_status).toEqual([
      { version: '2', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
      { version: '3', state: 'END', status: { error_code: 'FAILED_PRECONDITION', error_message: expect.stringMatching(/rejected by validation: .*corrupted/) } },
    ])
    expect((await adminCache(serving)).models.map((m) => m.key)).toEqual(['iris/2'])
  })
})
