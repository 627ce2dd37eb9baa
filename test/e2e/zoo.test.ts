/**
 * Acceptance of "real models fit": the zoo (scripts/dev/zoo.mjs: 13 TF.js models from npm packages,
 * nobody on this project trained them) in one repository (test/e2e/support/zoo-repo.ts), served under
 * the default settings by the deploy bundle the e2e files share, as production runs it (workerd
 * through Miniflare; wrangler dev's own path is the shared dev server's files'). Each model is called once, then in rounds with 4 rows where its batch is free;
 * every answer is a 200, and MobileNetV2's reported memory is within 0.8–1.25× of the heap it was
 * measured to need (the index's `memory`, measured by build-index in Node on the same wasm backend).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { ZOO } from '../../scripts/dev/zoo.mjs'
import { get, post } from './support/http'
import { ROOT, sharedBundle, sharedZoo, startBundle } from './support/servers'
import type { BundleServer } from './support/servers'

interface Spec {
  name: string
  dtype: string
  shape: number[] | null
}
interface IndexedVersion {
  signature: { inputs: Spec[] }
  memory?: { restingBytes: number; activationBytes: number; rowBytes: number; heapBytes1: number }
}
interface Index {
  models: Record<string, { versions: Record<string, IndexedVersion>; config?: { inputs?: Record<string, unknown> } }>
  backend?: { baseHeapBytes: number }
}

/** Rounds of 4-row requests after the first call of each model. */
const ROUNDS = 2
const PHOTO = readFileSync(join(ROOT, 'test/fixtures/models/_images/chelsea-small.jpg')).toString('base64')

let server: BundleServer
let index: Index

beforeAll(async () => {
  // As `npm run dev` builds it: indexed, each model's memory measured (cached by digest).
  const models = await sharedZoo(540_000)
  index = JSON.parse(readFileSync(join(models, '_index.json'), 'utf8')) as Index
  server = await startBundle({ bundle: await sharedBundle(), assetsDir: models })
}, 600_000)

afterAll(async () => {
  await server?.stop()
})

/** A request body of `rows` rows: the photo for an image input, zeros for a tensor input. */
function body(name: string, rows: number): unknown {
  const model = index.models[name]!
  const [input] = model.versions['1']!.signature.inputs
  const image = model.config?.inputs?.[input!.name] !== undefined
  const zeros = (shape: number[]): unknown =>
    shape.length === 0 ? 0 : Array.from({ length: shape[0]! }, () => zeros(shape.slice(1)))
  const row = image ? { b64: PHOTO } : zeros(input!.shape!.slice(1))
  return { instances: Array.from({ length: rows }, () => row) }
}

const batchIsFree = (name: string) =>
  index.models[name]!.versions['1']!.signature.inputs.every((s) => s.shape?.[0] === -1)

describe('the zoo under the default settings', () => {
  const failures: string[] = []
  const call = async (name: string, rows: number) => {
    const answer = await post(`${server.url}/v1/models/${name}:predict`, body(name, rows))
    if (answer.status !== 200) failures.push(`${name} × ${rows} rows: ${answer.status} ${answer.text.slice(0, 300)}`)
  }

  it('answers every model once, then rounds of 4 rows, all 200', async () => {
    expect(Object.keys(index.models).sort()).toEqual(ZOO.map((m: { name: string }) => m.name).sort())
    for (const { name } of ZOO) await call(name, 1)
    for (let round = 0; round < ROUNDS; round++) {
      for (const { name } of ZOO) if (batchIsFree(name)) await call(name, 4)
    }
    expect(failures).toEqual([])
  })

  it("classifies a photograph with add-model's starting config plus each package's labels", async () => {
    const NSFW = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy']
    const EMOTION = ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise']
    for (const [name, labels] of [
      ['nsfw-mobilenet-v2-mid', NSFW],
      ['nsfw-mobilenet-v2', NSFW],
      ['emotion', EMOTION],
    ] as const) {
      const photo = readFileSync(join(ROOT, 'test/fixtures/models/_images/chelsea.jpg'))
      const response = await fetch(`${server.url}/v1/models/${name}:classify`, {
        method: 'POST',
        body: photo,
        headers: { 'content-type': 'image/jpeg' },
        signal: AbortSignal.timeout(60_000),
      })
      const text = await response.text()
      expect(response.status, `${name}: ${text}`).toBe(200)
      // A cat photograph: whatever the ranking, the labels are the package's classes (top 5 of them).
      const answered = (JSON.parse(text) as { label: string }[]).map((r) => r.label)
      expect(answered.length).toBe(Math.min(5, labels.length))
      expect(answered.every((label) => (labels as readonly string[]).includes(label))).toBe(true)
    }
  })

  it("reports MobileNetV2's memory within 0.8–1.25× of the heap it needs", async () => {
    const name = 'nsfw-mobilenet-v2'
    await call(name, 1)
    const metrics = (await get(`${server.url}/metrics`)).text
    const line = metrics
      .split('\n')
      .find((l) => l.startsWith('warmserve_model_memory_bytes{') && l.includes(`model="${name}"`))
    expect(line, `no warmserve_model_memory_bytes for ${name}; failures: ${failures.join('; ')}`).toBeDefined()
    const reported = Number(line!.split(' ').at(-1))
    const m = index.models[name]!.versions['1']!.memory!
    // Measured: the heap it needs for its weights, kernel state and one row, the backend's own bytes aside.
    const measured = m.heapBytes1 - index.backend!.baseHeapBytes
    expect(reported / measured).toBeGreaterThanOrEqual(0.8)
    expect(reported / measured).toBeLessThanOrEqual(1.25)
  })
})
