/**
 * Issue 24's crafted images (scripts/dev/hostile-images.mjs) sent to the deploy bundle in workerd (Miniflare),
 * the memory read as the workerd process's resident size: sampled while each request runs (its peak) and after it (what
 * it left). Local workerd has no 128 MB cap, so what these figures show would kill a production isolate.
 * Each answer and figure is printed: docs/images.md's hostile-input table quotes them.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs module without type declarations
import { residentKiB, workerdProcesses } from '../../bench/measure.mjs'
// @ts-expect-error: a plain .mjs module without type declarations
import { flatJpeg, hostileImages } from '../../scripts/dev/hostile-images.mjs'
import { PHOTOS } from './support/image-models'
import { sharedFixtureServer } from './support/servers'
import type { SharedServer } from './support/servers'

const MiB = 1024 * 1024
let server: SharedServer

/** The Worker's workerd processes (not wrangler's proxy): found with a `ps`, once per request. */
function workerPids(): number[] {
  const pids = (workerdProcesses(server) as { worker: { pid: number }[] }).worker.map((p) => p.pid)
  if (pids.length === 0) throw new Error(`no workerd process of the Worker (${JSON.stringify(server)})`)
  return pids
}
/** Their resident memory, in MiB: read without spawning a process, as the sampling below does every 20 ms. */
const rss = (pids = workerPids()): number => (residentKiB(pids) as number) / 1024

/** One image to the `pixels` model as a b64 instance: its status, error, time, and workerd's peak and final RSS growth in MiB. */
async function send(bytes: Uint8Array) {
  const pids = workerPids()
  const before = rss(pids)
  let peak = before
  let done = false
  const sampling = (async () => {
    while (!done) {
      peak = Math.max(peak, rss(pids))
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })()
  const started = performance.now()
  const res = await fetch(`${server.url}/v1/models/pixels:predict`, {
    method: 'POST',
    body: JSON.stringify({ instances: [{ b64: Buffer.from(bytes).toString('base64') }] }),
    headers: { 'content-type': 'application/json' },
    signal: AbortSignal.timeout(120_000),
  })
  const body = (await res.json()) as { error?: string }
  const ms = performance.now() - started
  done = true
  await sampling
  const after = rss(pids)
  return { status: res.status, error: body.error, ms, peak: Math.max(peak, after) - before, left: after - before }
}

beforeAll(async () => {
  server = await sharedFixtureServer()
})

describe('crafted images through workerd', () => {
  it('are refused from their headers, or decoded within the limits, and leave no decoder heap behind', async () => {
    const photo = readFileSync(join(PHOTOS, 'chelsea.jpg'))
    // Both wasm decoders started and the model loaded first: their resting heaps are not the attack's.
    expect((await send(photo)).status).toBe(200)
    expect((await send(readFileSync(join(PHOTOS, 'chelsea-lossless.webp')))).status).toBe(200)
    const start = rss()
    const files: Record<string, Uint8Array> = {
      ...(await hostileImages(photo)),
      'jpeg-black-8mp.jpg': flatJpeg(3264, 2448, 3),
      'jpeg-flat-3mp.jpg (allowed)': flatJpeg(2000, 1500, 3),
    }
    const expected: Record<string, [number, RegExp]> = {
      'png-double-ihdr.png': [400, /a second IHDR chunk/],
      'png-idat-bomb.png': [400, /a compression bomb/],
      'png-iccp-bomb.png': [200, /^$/],
      'png-rgba16-2800.png': [413, /MAX_IMAGE_PIXELS/],
      // Baseline JPEGs past MAX_IMAGE_PIXELS are decoded at the smallest DCT scale that covers the model's
      // input (1/8 here: 1024×1024 and 408×306), and that size is within the limit; the work bound still counts every block.
      'jpeg-fill-byte-desync.jpg': [200, /^$/],
      'jpeg-scan-bomb.jpg': [413, /more than 100 scans/],
      'jpeg-cmyk.jpg': [400, /a CMYK JPEG/],
      'jpeg-ycck.jpg': [400, /a YCCK JPEG/],
      'jpeg-black-8mp.jpg': [200, /^$/],
      'jpeg-flat-3mp.jpg (allowed)': [200, /^$/],
    }
    const results: [string, Awaited<ReturnType<typeof send>>][] = []
    for (const [name, bytes] of Object.entries(files)) {
      const result = await send(bytes)
      results.push([name, result])
      console.log(
        `[hostile] ${name} (${bytes.length} bytes): ${result.status} in ${result.ms.toFixed(0)} ms, workerd RSS peak +${result.peak.toFixed(1)} MiB, left +${result.left.toFixed(1)} MiB; ${result.error ?? 'ok'}`,
      )
    }
    const growth = rss() - start
    console.log(
      `[hostile] all of them: workerd RSS ${start.toFixed(1)} → ${(start + growth).toFixed(1)} MiB (+${growth.toFixed(1)} MiB)`,
    )
    for (const [name, result] of results) {
      const [status, message] = expected[name]!
      expect([name, result.status, result.error ?? '']).toEqual([name, status, expect.stringMatching(message)])
      // The largest decode allowed by default is MAX_IMAGE_DECODE_BYTES (16 MiB) beyond its decoder's initial heap;
      // the rest is V8's garbage not yet collected and the request's own buffers (a 2.5 MB base64 body, parsed).
      expect(result.peak * MiB, name).toBeLessThanOrEqual(48 * MiB)
    }
    // No decoder heap stays after its decode (main's kept +518 MiB after the fill-byte JPEG alone; one kept
    // per decode would be 16 MiB or more for each of the ten). What is left is garbage: the decoded images'
    // RGBA and copies and the bodies, which V8 frees only when it collects, and it collects for
    // ArrayBuffers once 64 MiB more are outside its heap than at its last collection (docs/memory.md,
    // "what finished requests leave"); and the pages workerd's allocator keeps once freed. Seen at +40.6
    // to +60.6 MiB over runs, so the bound is V8's 64 MiB and a half again for the allocator.
    expect(growth * MiB).toBeLessThanOrEqual(96 * MiB)
  })
})
