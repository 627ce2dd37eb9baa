/**
 * A bad R2 candidate cannot break serving (issue 16, finding 2), through the real publish script and
 * cron: a layers model whose warmup asks for 4.3 GB (UpSampling2D by 1170 of a 28×28 image) is
 * published into the bucket of a Miniflare instance — the deploy bundle in workerd — and the cron is
 * fired in that same isolate. It is refused, and the isolate keeps serving iris and digits, stays
 * ready, reloads, and validates and serves a good version published after it.
 */
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import '@tensorflow/tfjs-backend-cpu'
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import { convertV4MiniflareOptions, Miniflare } from 'miniflare'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { publishVersion } from '../../scripts/publish-model.mjs'

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
const TOKEN = 'r2-bomb-admin'
const SETOSA = [5.1, 3.5, 1.4, 0.2]
const BLANK_DIGIT = Array.from({ length: 28 }, () => Array.from({ length: 28 }, () => [0]))

interface Bucket {
  get(key: string): Promise<{ text(): Promise<string> } | null>
}

let dir: string
let mf: Miniflare

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

/** The bomb, built with tf.js layers and saved as a model folder, as a converter would. */
async function bomb(): Promise<string> {
  const folder = join(dir, 'bomb')
  mkdirSync(folder)
  const model = tfl.sequential({
    layers: [
      tfl.layers.upSampling2d({ inputShape: [28, 28, 1], size: [1170, 1170] }),
      tfl.layers.globalAveragePooling2d({}),
      tfl.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  })
  await model.save(
    tf.io.withSaveHandler(async ({ modelTopology, weightSpecs, weightData }) => {
      const weightsManifest = [{ paths: ['group1-shard1of1.bin'], weights: weightSpecs }]
      writeFileSync(join(folder, 'model.json'), JSON.stringify({ modelTopology, format: 'layers-model', weightsManifest }))
      writeFileSync(join(folder, 'group1-shard1of1.bin'), new Uint8Array(weightData as ArrayBuffer))
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
    }),
  )
  model.dispose()
  return folder
}

/** Iris with its output bias replaced: the same signature, other answers (virginica for everything). */
function irisVariant(name: string): string {
  const folder = join(dir, name)
  mkdirSync(folder)
  copyFileSync(join(ROOT, 'model-assets/iris/1/model.json'), join(folder, 'model.json'))
  const shard = readFileSync(join(ROOT, 'model-assets/iris/1/group1-shard1of1.bin'))
  const weights = new Float32Array(shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength))
  weights.set([0, 0, 50], weights.length - 3) // species/bias, the shard's last weight
  writeFileSync(join(folder, 'group1-shard1of1.bin'), new Uint8Array(weights.buffer))
  return folder
}

async function predict(model: 'iris' | 'digits') {
  const body = { instances: [model === 'iris' ? SETOSA : BLANK_DIGIT] }
  const res = await mf.dispatchFetch(`http://localhost/v1/models/${model}:predict`, { method: 'POST', body: JSON.stringify(body) })
  const json = (await res.json()) as { predictions?: number[][]; error?: string }
  const row = json.predictions?.[0] ?? []
  return { status: res.status, version: res.headers.get('x-model-version'), top: row.indexOf(Math.max(...row)), error: json.error }
}

const status = async (path: string, init?: Parameters<Miniflare['dispatchFetch']>[1]) => (await mf.dispatchFetch(`http://localhost${path}`, init)).status

async function fireCron() {
  const worker = (await mf.getWorker()) as unknown as { scheduled(o: { cron: string }): Promise<{ outcome: string }> }
  expect((await worker.scheduled({ cron: '*/5 * * * *' })).outcome).toBe('ok')
}

async function pointer() {
  const bucket = (await mf.getR2Bucket('MODELS')) as unknown as Bucket
  return JSON.parse(await (await bucket.get('_pointer.json'))!.text()) as { models: Record<string, { current: number | null; rejected: Record<string, { reason: string }> }> }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warmserve-r2-bomb-'))
  const modules = bundle(join(dir, 'out'))
  const toml = readFileSync(join(ROOT, 'wrangler.toml'), 'utf8')
  mf = new Miniflare(
    convertV4MiniflareOptions({
      modulesRoot: join(dir, 'out'),
      modules,
      compatibilityDate: /^compatibility_date = "(.+)"$/m.exec(toml)![1]!,
      assets: { directory: join(ROOT, 'model-assets'), binding: 'ASSETS', routerConfig: { has_user_worker: true, invoke_user_worker_ahead_of_assets: true } },
      r2Buckets: { MODELS: /bucket_name = "(.+)"/.exec(toml)![1]! },
      resourcePersistencePath: join(dir, 'state'),
      bindings: { ADMIN_TOKEN: TOKEN },
    }),
  )
  await mf.ready
})

afterAll(async () => {
  await mf?.dispose()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('a bomb published to R2', () => {
  it('is refused by the cron, and the isolate that validated it keeps serving, stays ready, and takes a good version after', async () => {
    expect(await predict('iris')).toMatchObject({ status: 200, version: '1', top: 0 })
    expect(await predict('digits')).toMatchObject({ status: 200, version: '1' })

    const bucket = await mf.getR2Bucket('MODELS')
    await publishVersion(bucket, { dir: await bomb(), name: 'digits', version: 2, signatureChange: true })
    await fireCron()
    expect((await pointer()).models.digits).toMatchObject({
      current: null,
      rejected: { 2: { reason: expect.stringMatching(/^needs ~4\.3 GB at warmup \(weights \d+ B \+ activations 4\.3 GB\), the budget is 48 MiB$/) } },
    })

    // The same isolate, after the cron: every model still answers, readiness holds, a reload works.
    expect(await predict('iris')).toMatchObject({ status: 200, version: '1', top: 0 })
    expect(await predict('digits')).toMatchObject({ status: 200, version: '1' })
    expect(await status('/v2/health/ready')).toBe(200)
    expect(await status('/admin/models/iris/reload', { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` } })).toBe(200)

    // A good version published afterwards is validated and served.
    await publishVersion(bucket, { dir: irisVariant('iris-v2'), name: 'iris', version: 2 })
    await fireCron()
    expect((await pointer()).models.iris).toMatchObject({ current: 2, rejected: {} })
    expect(await predict('iris')).toMatchObject({ status: 200, version: '2', top: 2 })
    expect(await predict('digits')).toMatchObject({ status: 200, version: '1' })
  })
})
