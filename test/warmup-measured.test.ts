import { beforeAll, describe, expect, it } from 'vitest'
import { env } from 'cloudflare:test'
import { isolate } from '../src/isolate'
import { storeHandler } from '../src/repository/model-files'
import { assetsStore } from '../src/repository/stores'
import { buildServable } from '../src/runtime/servable'
import { tf } from '../src/runtime/tf'

// Models here are built directly, not through the isolate: start its backend as a load would.
beforeAll(() => isolate().backend.ensure())

const digits = () => storeHandler(assetsStore(env.ASSETS), 'digits/1').load()

describe('warmup with measured figures (issue 25: the batch-2 profiling run off the first request)', () => {
  it('profiles batch 1 and batch 2 when the version carries no measured figures', async () => {
    const { servable, timings } = await buildServable(await digits())
    try {
      expect(servable.footprint.measured).toMatch(/^(warmup|heap)-1-2$/)
      expect(timings.warmup1Ms).toBeGreaterThanOrEqual(0)
      expect(timings.warmup2Ms).toBeGreaterThanOrEqual(0)
    } finally {
      servable.dispose()
    }
  })

  it('runs batch 1 only with measured figures, counts by them, and still answers', async () => {
    const reference = await buildServable(await digits())
    const { weightBytes, kernelBytes, activationBytes, rowBytes } = reference.servable.footprint
    const oneRow = activationBytes + rowBytes
    reference.servable.dispose()
    const known = {
      weightBytes,
      restingBytes: weightBytes + kernelBytes,
      activationBytes: oneRow * 2,
      rowBytes: 12_345,
      digest: 'the files loaded',
    }
    const { servable, timings, warmedUp } = await buildServable(await digits(), known)
    try {
      expect(warmedUp).toBe(true)
      expect(timings.warmup2Ms).toBeUndefined()
      expect(servable.footprint).toMatchObject({ measured: 'index', activationBytes: oneRow * 2, rowBytes: 12_345 })
      // Output shapes are still filled in by the batch-1 run, and the model answers.
      const x = tf.zeros([1, 28, 28, 1])
      const out = await servable.run({ [servable.signature.inputs[0]!.name]: x })
      expect(Object.values(out)[0]!.shape).toEqual([1, 10])
      tf.dispose([x, ...Object.values(out)])
    } finally {
      servable.dispose()
    }
  })

  it('never counts one row for less than the batch-1 run measured in the isolate', async () => {
    const reference = await buildServable(await digits())
    const seen = reference.servable.footprint.activationBytes + reference.servable.footprint.rowBytes
    // A figure far too low (from another runtime, say): one row still counts at least what was seen here.
    const { weightBytes, kernelBytes } = reference.servable.footprint
    reference.servable.dispose()
    const { servable } = await buildServable(await digits(), {
      weightBytes,
      restingBytes: weightBytes + kernelBytes,
      activationBytes: 1,
      rowBytes: 1,
      digest: 'the files loaded',
    })
    try {
      expect(servable.footprint.rowBytes).toBe(1)
      expect(servable.footprint.activationBytes + servable.footprint.rowBytes).toBeGreaterThanOrEqual(seen)
    } finally {
      servable.dispose()
    }
  })
})
