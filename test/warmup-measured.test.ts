import { beforeAll, describe, expect, it } from 'vitest'
import { env } from 'cloudflare:test'
import { isolate } from '../src/isolate'
import { EarlierLoads } from '../src/repository/load'
import { storeHandler } from '../src/repository/model-files'
import { assetsStore } from '../src/repository/stores'
import { buildServable } from '../src/runtime/servable'
import type { Servable } from '../src/runtime/servable'
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

describe('a reload of files warmed up before in this isolate (the zoo reloads a model on nearly every request)', () => {
  const known = (digest: string, footprint: { weightBytes: number; kernelBytes: number }) => ({
    weightBytes: footprint.weightBytes,
    restingBytes: footprint.weightBytes + footprint.kernelBytes,
    activationBytes: 1,
    rowBytes: 1,
    digest,
  })

  it('runs no warmup: the outputs, the figures and the batch-1 check are the first load’s, and it answers the same', async () => {
    const reference = await buildServable(await digits())
    const figures = known('reloaded files', reference.servable.footprint)
    reference.servable.dispose()
    const x = tf.randomUniform([2, 28, 28, 1], 0, 1, 'float32', 7)
    const answer = async (servable: Servable) => {
      const out = await servable.run({ [servable.signature.inputs[0]!.name]: x })
      try {
        return Array.from(await Object.values(out)[0]!.data())
      } finally {
        tf.dispose(Object.values(out))
      }
    }
    try {
      const first = await buildServable(await digits(), figures)
      const firstAnswer = await answer(first.servable)
      const { footprint, signature } = first.servable
      first.servable.dispose()
      expect(first.timings.warmup1Ms).toBeGreaterThanOrEqual(0)
      expect(first.timings.warmupRemembered).toBeUndefined()

      expect(first.learned).toBeDefined()
      // Kept by the files they were read from (repository/load.ts), as an isolate keeps them.
      const earlier = new EarlierLoads()
      const files = [{ path: 'model.json', bytes: 1 }]
      earlier.remember('digits/1', 'assets', files, first.learned)
      expect(earlier.get('digits/1', 'assets', [{ path: 'model.json', bytes: 2 }])).toBeUndefined()
      expect(earlier.get('digits/1', 'r2', files)).toBeUndefined()
      const again = await buildServable(await digits(), figures, earlier.get('digits/1', 'assets', files))
      try {
        expect(again.warmedUp).toBe(true)
        expect(again.learned).toBeUndefined()
        expect(again.timings.warmup1Ms).toBeUndefined()
        expect(again.timings.warmupRemembered).toBe(1)
        // The index's figures raised to the batch-1 run seen on the first load, as then; the heap at rest as then.
        expect(again.servable.footprint).toMatchObject({
          measured: 'index',
          weightBytes: footprint.weightBytes,
          kernelBytes: footprint.kernelBytes,
          activationBytes: footprint.activationBytes,
          rowBytes: 1,
        })
        expect(footprint.activationBytes + footprint.rowBytes).toBeGreaterThan(2)
        if (footprint.heapBytes !== undefined)
          expect(again.servable.footprint.heapBytes).toBeGreaterThanOrEqual(footprint.heapBytes)
        // (A layers model's tensor names differ from one build to the next: the rest is the same.)
        const described = (outputs: typeof signature.outputs) =>
          outputs.map(({ name, shape, dtype }) => ({ name, shape, dtype }))
        expect(described(again.servable.signature.outputs)).toEqual(described(signature.outputs))
        expect(await answer(again.servable)).toEqual(firstAnswer)
      } finally {
        again.servable.dispose()
      }
      // Without an earlier build's lessons (other files, a fresh isolate state), a build warms up.
      const other = await buildServable(await digits(), known('other files', footprint))
      other.servable.dispose()
      expect(other.timings.warmupRemembered).toBeUndefined()
      expect(other.timings.warmup1Ms).toBeGreaterThanOrEqual(0)
      // Lessons of files the index did not measure do not stand in for the index's check, nor the reverse.
      const measuredHere = await buildServable(await digits())
      measuredHere.servable.dispose()
      expect(measuredHere.learned?.figures).toBeDefined()
      const checked = await buildServable(await digits(), figures, measuredHere.learned)
      checked.servable.dispose()
      expect(checked.timings.warmup1Ms).toBeGreaterThanOrEqual(0)
      expect(checked.timings.warmupRemembered).toBeUndefined()
    } finally {
      x.dispose()
    }
  })
})
