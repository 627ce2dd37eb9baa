/**
 * Validation predicts memory before it runs anything: a candidate whose weights and warmup activations
 * exceed CACHE_BUDGET_BYTES is refused, with the figures, from its model.json alone. And a validation
 * that fails because of the environment (R2, the wasm heap) is not stored as the candidate's verdict.
 */
import { env } from 'cloudflare:workers'
import * as tfl from '@tensorflow/tfjs-layers'
import { afterAll, beforeEach, describe, expect, it } from 'vitest'
import { resetIsolate } from '../src/isolate'
import { readPointer } from '../src/repository/pointer'
import { publishVersions } from '../src/repository/publish'
import { tf } from '../src/runtime/tf'
import { artifactsOf } from './support/helpers'
import { emptyBucket, irisFiles, publish, publishElsewhere } from './support/r2-helpers'
import { restoreWasm, useWasm } from './support/wasm-helpers'

const MiB = 1024 * 1024

/** The files publish-model uploads for a built layers model. */
async function filesOf(model: tfl.LayersModel): Promise<Record<string, ArrayBuffer>> {
  const { modelTopology, weightSpecs, weightData } = await artifactsOf(model)
  model.dispose()
  const json = {
    modelTopology,
    format: 'layers-model',
    weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: weightSpecs }],
  }
  return {
    'model.json': new TextEncoder().encode(JSON.stringify(json)).buffer as ArrayBuffer,
    'group1-shard1of1.bin': weightData as ArrayBuffer,
  }
}

/** A 28×28 image upsampled by `size` in both directions, pooled, then classified: tiny weights, huge warmup. */
const upsampler = (size: number) =>
  filesOf(
    tfl.sequential({
      layers: [
        tfl.layers.upSampling2d({ inputShape: [28, 28, 1], size: [size, size] }),
        tfl.layers.globalAveragePooling2d({}),
        tfl.layers.dense({ units: 3, activation: 'softmax' }),
      ],
    }),
  )

/** Iris with `units` hidden units instead of 16: the same signature, 32 bytes of float32 weights per unit. */
async function wideIris(units: number): Promise<Record<string, ArrayBuffer>> {
  const files = await irisFiles()
  const text = new TextDecoder()
    .decode(files['model.json'])
    .replace('"units":16', `"units":${units}`)
    .replace('"shape":[4,16]', `"shape":[4,${units}]`)
    .replace('"shape":[16]', `"shape":[${units}]`)
    .replace('"shape":[16,3]', `"shape":[${units},3]`)
  return {
    'model.json': new TextEncoder().encode(text).buffer as ArrayBuffer,
    'group1-shard1of1.bin': new ArrayBuffer((8 * units + 3) * 4),
  }
}

/** The bucket, recording every key read and failing reads of `failing` keys. */
function watched(failing: (key: string) => boolean = () => false) {
  const reads: string[] = []
  const bucket = new Proxy(env.MODELS, {
    get(target, prop) {
      if (prop !== 'get') return Reflect.get(target, prop).bind(target)
      return (key: string, options?: R2GetOptions) => {
        reads.push(key)
        return failing(key) ? Promise.reject(new Error('R2 is down')) : target.get(key, options)
      }
    },
  })
  return { bucket, reads }
}

/** One cron pass over the bucket, in an isolate state of its own, with the Worker's budget. */
const validate = (bucket: R2Bucket = env.MODELS) => publishElsewhere(env, bucket)

async function rejections(name: string) {
  const read = await readPointer(env.MODELS)
  if (read === 'unchanged') throw new Error('unreachable')
  return read.pointer.models[name]?.rejected ?? {}
}

beforeEach(async () => {
  resetIsolate()
  await emptyBucket(env.MODELS)
})

afterAll(restoreWasm)

describe('a candidate over the memory budget', () => {
  it('is refused with the figures, from its model.json alone: no weight fetched, nothing built', async () => {
    await publish(env.MODELS, 'bomb', 1, await upsampler(1170))
    await publish(env.MODELS, 'wideiris', 1, await wideIris(1_600_000))
    const { bucket, reads } = watched()
    const profile = await tf.profile(async () => void (await validate(bucket)))
    expect(profile.kernels).toEqual([])
    expect(profile.newTensors).toBe(0)
    expect(reads.filter((key) => key.endsWith('.bin'))).toEqual([])
    expect(await rejections('bomb')).toEqual({
      1: expect.objectContaining({
        reason: 'needs ~6.4 GB at warmup (weights 24 B + kernels 48 B + activations 6.4 GB), the budget is 81 MB',
      }),
    })
    // Finding 3: 51 MB of weights, over the budget the cache holds them to, so no isolate could load it.
    expect(await rejections('wideiris')).toEqual({
      1: expect.objectContaining({
        reason: 'needs ~163 MB at warmup (weights 51 MB + kernels 102 MB + activations 9.6 MB), the budget is 81 MB',
      }),
    })
  })
})

describe('a validation that fails because of the environment', () => {
  it('stores no verdict when R2 fails mid-way, and the next run accepts the version', async () => {
    await publish(env.MODELS, 'r2iris', 1, await irisFiles())
    const down = watched((key) => key.endsWith('.bin'))
    const first = await validate(down.bucket)
    expect(first.rejected).toEqual([])
    expect(first.errors).toEqual(['r2iris/1 not validated: R2 is down'])
    expect(await rejections('r2iris')).toEqual({})

    expect((await validate()).accepted).toEqual(['r2iris/1'])
  })

  it('stores no verdict when the wasm heap is too full for warmup, and the next run, with room, accepts it', async () => {
    // 1 680² floats a row at warmup (11 MB; warmup runs one row, then two): within the budget and the
    // heap's cap, but not beside 48 MiB that other models hold.
    await publish(env.MODELS, 'upsampler', 1, await upsampler(60))
    await useWasm({ maxHeapBytes: 64 * MiB })
    const others = tf.zeros([12 * MiB])
    try {
      const first = await validate()
      expect(first.rejected).toEqual([])
      expect(first.errors).toEqual([
        expect.stringMatching(
          /^upsampler\/1 not validated: warmup inference failed: wasm backend: allocation of \d+ bytes failed \(heap \d+ bytes, at most 67108864\)$/,
        ),
      ])
      expect(await rejections('upsampler')).toEqual({})
    } finally {
      others.dispose()
    }
    expect((await validate()).accepted).toEqual(['upsampler/1'])
  })

  it('stores the verdict when warmup asks for more than the heap may ever hold: that is the candidate', async () => {
    // 2 800² floats: 31 MB, within the budget, past a heap capped at 20 MiB.
    await publish(env.MODELS, 'upsampler', 1, await upsampler(100))
    await useWasm({ maxHeapBytes: 20 * MiB })
    const report = await validate()
    expect(report.rejected).toEqual([
      {
        model: 'upsampler/1',
        reason: expect.stringMatching(/^warmup inference failed: wasm backend: allocation of 31360000 bytes failed/),
      },
    ])
    expect(Object.keys(await rejections('upsampler'))).toEqual(['1'])
  })
})
