/**
 * A bad R2 candidate cannot break serving, through the real publish script and
 * cron: a layers model whose warmup asks for 4.3 GB (UpSampling2D by 1170 of a 28×28 image) is
 * published into the bucket of a Miniflare instance — the deploy bundle in workerd — and the cron is
 * fired in that same isolate. It is refused, and the isolate keeps serving iris and digits, stays
 * ready, reloads, and validates and serves a good version published after it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import '@tensorflow/tfjs-backend-cpu'
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { publishVersion } from '../../scripts/tools/publish-model.mjs'
import { sharedBundle, startBundle } from './support/servers'
import type { BundleServer } from './support/servers'
import { bearer, post, SETOSA } from './support/http'
import { irisVariant } from './support/models'

const TOKEN = 'r2-bomb-admin'
const BLANK_DIGIT = Array.from({ length: 28 }, () => Array.from({ length: 28 }, () => [0]))

interface Bucket {
  get(key: string): Promise<{ text(): Promise<string> } | null>
}

let dir: string
let server: BundleServer

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
      writeFileSync(
        join(folder, 'model.json'),
        JSON.stringify({ modelTopology, format: 'layers-model', weightsManifest }),
      )
      writeFileSync(join(folder, 'group1-shard1of1.bin'), new Uint8Array(weightData as ArrayBuffer))
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
    }),
  )
  model.dispose()
  return folder
}

async function predict(model: 'iris' | 'digits') {
  const res = await post<{ predictions?: number[][]; error?: string }>(`${server.url}/v1/models/${model}:predict`, {
    instances: [model === 'iris' ? SETOSA : BLANK_DIGIT],
  })
  const row = res.json?.predictions?.[0] ?? []
  return {
    status: res.status,
    version: res.headers.get('x-model-version'),
    top: row.indexOf(Math.max(...row)),
    error: res.json?.error,
  }
}

const status = async (path: string, init?: RequestInit) =>
  (await fetch(`${server.url}${path}`, { ...init, signal: AbortSignal.timeout(60_000) })).status

async function fireCron() {
  expect(await server.scheduled()).toBe('ok')
}

async function pointer() {
  const bucket = (await server.miniflare.getR2Bucket('MODELS')) as unknown as Bucket
  return JSON.parse(await (await bucket.get('_pointer.json'))!.text()) as {
    models: Record<string, { current: number | null; rejected: Record<string, { reason: string }> }>
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warmserve-r2-bomb-'))
  server = await startBundle({
    bundle: await sharedBundle(),
    persistDir: join(dir, 'state'),
    vars: { ADMIN_TOKEN: TOKEN },
  })
})

afterAll(async () => {
  await server?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('a bomb published to R2', () => {
  it('is refused by the cron, and the isolate that validated it keeps serving, stays ready, and takes a good version after', async () => {
    expect(await predict('iris')).toMatchObject({ status: 200, version: '1', top: 0 })
    expect(await predict('digits')).toMatchObject({ status: 200, version: '1' })

    const bucket = await server.miniflare.getR2Bucket('MODELS')
    await publishVersion(bucket, { dir: await bomb(), name: 'digits', version: 2, signatureChange: true })
    await fireCron()
    expect((await pointer()).models.digits).toMatchObject({
      current: null,
      rejected: {
        2: {
          reason: expect.stringMatching(
            /^needs ~6\.4 GB at warmup \(weights \d+ B \+ kernels \d+ B \+ activations 6\.4 GB\), the budget is 81 MB$/,
          ),
        },
      },
    })

    // The same isolate, after the cron: every model still answers, readiness holds, a reload works.
    expect(await predict('iris')).toMatchObject({ status: 200, version: '1', top: 0 })
    expect(await predict('digits')).toMatchObject({ status: 200, version: '1' })
    expect(await status('/v2/health/ready')).toBe(200)
    expect(await status('/admin/models/iris/reload', { method: 'POST', headers: bearer(TOKEN) })).toBe(200)

    // A good version published afterwards is validated and served.
    await publishVersion(bucket, { dir: irisVariant(dir, 'iris-v2', [0, 0, 50]), name: 'iris', version: 2 })
    await fireCron()
    expect((await pointer()).models.iris).toMatchObject({ current: 2, rejected: {} })
    expect(await predict('iris')).toMatchObject({ status: 200, version: '2', top: 2 })
    expect(await predict('digits')).toMatchObject({ status: 200, version: '1' })
  })
})
