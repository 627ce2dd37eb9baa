/**
 * A batch of photos cannot take an isolate past its memory through workerd (the deploy bundle in
 * Miniflare): a 10-row request
 * to a MobileNet at 224×224 (@vladmandic/human's faceres, nobody here trained it) grows the workerd
 * process by at most 64 MiB, because the rows are admitted against the budget in sub-batches.
 */
import { beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs module without type declarations
import { workerdRss } from '../../bench/measure.mjs'
import { MEMORY_MODEL } from './support/fixture-repo'
import { sharedFixtureServer } from './support/servers'
import type { SharedServer } from './support/servers'

const MiB = 1024 * 1024
const ROW = 224 * 224 * 3

let server: SharedServer

/** A v2 infer request with `rows` rows of `input_1` as binary tensor data (a 10-row JSON body would pass MAX_BODY_BYTES). */
async function infer(rows: number) {
  const data = new Float32Array(rows * ROW)
  for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761) % 1000) / 1000
  const header = new TextEncoder().encode(
    JSON.stringify({
      inputs: [
        {
          name: 'input_1',
          shape: [rows, 224, 224, 3],
          datatype: 'FP32',
          parameters: { binary_data_size: data.byteLength },
        },
      ],
    }),
  )
  const body = new Uint8Array(header.byteLength + data.byteLength)
  body.set(header)
  body.set(new Uint8Array(data.buffer), header.byteLength)
  const res = await fetch(`${server.url}/v2/models/${MEMORY_MODEL}/infer`, {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(header.byteLength),
    },
    signal: AbortSignal.timeout(120_000),
  })
  return {
    status: res.status,
    json: (await res.json()) as { outputs?: { name: string; shape: number[] }[]; error?: string },
  }
}

/** Resident memory of the Worker's workerd process (not wrangler's proxy), in MiB. */
const rss = (): number => workerdRss(server).worker

beforeAll(async () => {
  server = await sharedFixtureServer()
})

describe('a 10-row request to a MobileNet through workerd', () => {
  it('is answered, and grows the workerd process by at most 64 MiB', async () => {
    // Loaded and warm first: the model's own memory is not the request's.
    const one = await infer(1)
    expect(one.status, one.json.error).toBe(200)
    const before = rss()
    expect(before).toBeGreaterThan(0)
    const ten = await infer(10)
    expect(ten.status, ten.json.error).toBe(200)
    expect(ten.json.outputs!.every((o) => o.shape[0] === 10)).toBe(true)
    const growth = rss() - before
    console.log(
      `faceres, 10 rows through workerd: RSS ${before.toFixed(1)} → ${(before + growth).toFixed(1)} MiB (+${growth.toFixed(1)} MiB)`,
    )
    expect(growth * MiB).toBeLessThanOrEqual(64 * MiB)
  })
})
