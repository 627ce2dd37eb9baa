/**
 * More of the isolate's memory in the budget (issue 22, items 6 and 7): a decode while it runs, and a
 * request's input rows and their concatenation, reserved before they are made; the decoders keep no
 * heap between decodes. Real photographs (test/fixtures/models/_images/) into nsfwjs's stock MobileNetV2
 * with an image input (`nsfw-images`, test/setup/assets.ts), under the default settings.
 */
import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { isolate } from '../src/isolate'
import { decoderHeapBytes, decoderHeapHighWaterBytes } from '../src/protocols/images/decode'
import { tf } from '../src/runtime/tf'
import { post } from './support/helpers'
import { freshWasmIsolate } from './support/wasm-helpers'
import { base64, photo as photoBytes } from './support/photos'

/** A fixture photo's bytes as base64, from the test assets. */
async function photo(name: string): Promise<string> {
  return base64(await photoBytes(name))
}

async function infer(images: string[]) {
  const res = await post('/v2/models/nsfw-images/infer', {
    inputs: [{ name: 'input_1', datatype: 'BYTES', shape: [images.length], data: images }],
  })
  const body = await res.json<{ error?: string; outputs?: { shape: number[] }[] }>()
  return { status: res.status, body }
}

const ledger = () => isolate().cache.admission.ledger
/** 224×224 RGB as float32: one row of the model's input. */
const ROW_BYTES = 224 * 224 * 3 * 4

describe('the budget counts what images take', () => {
  freshWasmIsolate()

  it("answers photos under the defaults and releases every decode's and row's reservation after the request", async () => {
    expect(ledger().used('decoder')).toBe(0)
    const res = await infer([await photo('chelsea.jpg'), await photo('chelsea.png')])
    expect(res.status, res.body.error).toBe(200)
    expect(res.body.outputs![0]!.shape).toEqual([2, 5])
    // The JPEG decoder ran (a PNG is decoded in JavaScript) and kept no heap.
    expect(decoderHeapHighWaterBytes()).toBeGreaterThan(0)
    expect(decoderHeapBytes()).toEqual({ jpg: 0, webp: 0 })
    // Nothing transient is left: the model alone.
    expect(ledger().used()).toBe(ledger().used('resident'))
    expect(ledger().highWater).toBeLessThanOrEqual(ledger().limit)
  }, 300_000)

  it('refuses rows that cannot fit beside the model with a 413 naming the figures, before decoding, leaving nothing behind', async () => {
    const small = await photo('chelsea-small.jpg')
    // The model is resident now: count its tensors before.
    const tensors = tf.memory().numTensors
    const rows = 48
    const { status, body } = await infer(Array(rows).fill(small))
    console.log(`${rows} photos: ${status} ${body.error}`)
    expect(status, body.error).toBe(413)
    expect(body.error).toContain(`${rows * ROW_BYTES * 2} bytes`)
    expect(body.error).toContain('CACHE_BUDGET_BYTES')
    expect(tf.memory().numTensors).toBe(tensors)
    expect(ledger().used()).toBe(ledger().used('resident'))
    // The model still answers a batch that fits.
    const four = await infer(Array(4).fill(small))
    expect(four.status, four.body.error).toBe(200)
    expect(four.body.outputs![0]!.shape).toEqual([4, 5])
    expect(tf.memory().numTensors).toBe(tensors)
  }, 300_000)

  it('keeps no WebP decoder heap, and nothing of the decode in the budget', async () => {
    const res = await post('/v2/models/digits/infer', {
      inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [await photo('chelsea-lossless.webp')] }],
    })
    expect(res.status, await res.clone().text()).toBe(200)
    expect(decoderHeapBytes()).toEqual({ jpg: 0, webp: 0 })
    expect(ledger().used()).toBe(ledger().used('resident'))
    expect(ledger().highWater).toBeLessThanOrEqual(ledger().limit)
  }, 300_000)
})
