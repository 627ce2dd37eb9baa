/**
 * `npm run reshard` re-splits a model's weights into smaller shards: the model then predicts
 * exactly what it did before, and build-index serves it.
 */
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import * as tfconv from '@tensorflow/tfjs-converter'
import * as tfl from '@tensorflow/tfjs-layers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { buildIndex } from '../../scripts/build/build-index.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { reshard } from '../../scripts/tools/reshard.mjs'

const ROOT = resolve(import.meta.dirname, '../..')
const HUMAN = join(ROOT, 'node_modules/@vladmandic/human/models')
let work: string

/** A tf.io handler reading a model file and its shards from a folder, as the Worker's does from a store. */
function folder(dir: string, file = 'model.json'): tf.io.IOHandler {
  return {
    load: () =>
      tf.io.getModelArtifactsForJSON(JSON.parse(readFileSync(join(dir, file), 'utf8')), async (manifest) => [
        tf.io.getWeightSpecs(manifest),
        manifest.flatMap((group) => group.paths.map((p) => new Uint8Array(readFileSync(join(dir, p))).buffer)),
      ]),
  }
}

/** Deterministic inputs in [0, 1). */
function input(shape: number[]): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1)
  return tf.tensor(
    Float32Array.from({ length: size }, (_, i) => ((i * 7919) % 1000) / 1000),
    shape,
  )
}

async function layersPrediction(dir: string): Promise<Float32Array> {
  const model = await tfl.loadLayersModel(folder(dir))
  const x = input([2, 28, 28, 1])
  const y = model.predict(x) as tf.Tensor
  const data = (await y.data()) as Float32Array
  tf.dispose([x, y])
  model.dispose()
  return data
}

async function graphPrediction(dir: string, file: string): Promise<Float32Array[]> {
  const model = await tfconv.loadGraphModel(folder(dir, file))
  const x = input([1, 32, 32, 3])
  const ys = [model.execute(x)].flat() as tf.Tensor[]
  const data = await Promise.all(ys.map((y) => y.data() as Promise<Float32Array>))
  tf.dispose([x, ...ys])
  model.dispose()
  return data
}

const shardSizes = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.bin'))
    .map((f) => statSync(join(dir, f)).size)

beforeAll(async () => {
  tf.env().set('IS_NODE', false)
  await tf.setBackend('cpu')
  work = mkdtempSync(join(tmpdir(), 'reshard-'))
})
afterAll(() => rmSync(work, { recursive: true, force: true }))

describe('reshard', () => {
  it('splits a layers model into shards under the limit; predictions are unchanged and build-index serves it', async () => {
    const dir = join(work, 'repo/digits/1')
    cpSync(join(ROOT, 'model-assets/digits/1'), dir, { recursive: true })
    const before = await layersPrediction(dir)

    const maxShardBytes = 50_000
    const { shards } = await reshard(dir, { maxShardBytes })

    expect(shards).toHaveLength(5) // 215 464 bytes of weights
    expect(readdirSync(dir).sort()).toEqual([
      'group1-shard1of5.bin',
      'group1-shard2of5.bin',
      'group1-shard3of5.bin',
      'group1-shard4of5.bin',
      'group1-shard5of5.bin',
      'model.json',
    ])
    expect(Math.max(...shardSizes(dir))).toBeLessThanOrEqual(maxShardBytes)
    expect(await layersPrediction(dir)).toEqual(before)
    const { index, skipped } = await buildIndex(join(work, 'repo'))
    expect(skipped).toEqual([])
    expect(Object.keys(index.models)).toEqual(['digits'])
  })

  it("splits a package's graph model (named after the model) and keeps its file name", async () => {
    const dir = join(work, 'liveness')
    mkdirSync(dir)
    for (const f of ['liveness.json', 'liveness.bin']) copyFileSync(join(HUMAN, f), join(dir, f))
    const before = await graphPrediction(dir, 'liveness.json')

    const { file, shards } = await reshard(dir, { maxShardBytes: 100_000 })

    expect(file).toBe('liveness.json')
    expect(shards).toHaveLength(6) // 592 976 bytes of weights
    expect(Math.max(...shardSizes(dir))).toBeLessThanOrEqual(100_000)
    expect(await graphPrediction(dir, 'liveness.json')).toEqual(before)
  })

  it('refuses a shard size over the 25 MiB asset limit', async () => {
    await expect(reshard(join(work, 'repo/digits/1'), { maxShardBytes: 26 * 2 ** 20 })).rejects.toThrow(
      /between 1 byte and 25 MiB/,
    )
  })
})
