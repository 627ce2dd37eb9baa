/**
 * The JavaScript side of the isolate's memory, measured where it runs (issue 22, item 4): a real
 * `wrangler dev` (workerd), its V8 heap read over the DevTools protocol after a forced collection
 * (scripts/dev/js-heap.mjs) after start, a first predict, the largest JPEG and WebP the limits allow
 * through nsfwjs's MobileNetV2, and the largest JSON body. The budget assumes JS_HEAP_BYTES
 * (src/core/config.ts): this fails when the bundle's heap grows past it, and when a decoder heap stays
 * after its decode.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { heapRepository } from '../../scripts/dev/js-heap.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { measure } from '../../scripts/dev/measure-js-heap.mjs'
import { JS_HEAP_BYTES } from '../../src/core/config'
import { wranglerConfigFor } from '../setup/assets'
import { startWranglerDev } from './support/servers'
import type { WranglerDev } from './support/servers'

interface Step {
  step: string
  usedSize: number
  totalSize: number
  backingStorageSize: number
  wasm: { tf: number; jpg: number; webp: number; decoderHighWater: number }
}

let work: string
let server: WranglerDev

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'js-heap-'))
  const repo = await heapRepository(join(work, 'models'))
  server = await startWranglerDev({ configs: [wranglerConfigFor(repo, join(work, 'wrangler.toml'))] })
}, 600_000)

afterAll(async () => {
  await server?.stop()
  if (work) rmSync(work, { recursive: true, force: true })
})

describe("the Worker's JavaScript heap in workerd", () => {
  it('stays within JS_HEAP_BYTES after start, a predict, the largest images and the largest JSON body', async () => {
    const steps = (await measure(server, { log: console.log })) as Step[]
    expect(steps.map((s) => s.step)).toHaveLength(8)
    for (const { step, totalSize, wasm } of steps) {
      expect(totalSize, step).toBeGreaterThan(0)
      expect(totalSize, step).toBeLessThanOrEqual(JS_HEAP_BYTES)
      // Decoders keep nothing between decodes.
      expect(wasm.jpg + wasm.webp, step).toBe(0)
    }
    // The photos were decoded by the wasm decoders, each heap dropped after.
    expect(steps.at(-1)!.wasm.decoderHighWater).toBeGreaterThan(16 * 1024 * 1024)
  }, 900_000)
})
