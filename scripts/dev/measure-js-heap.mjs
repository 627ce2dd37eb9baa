#!/usr/bin/env node
/**
 * Measures the Worker bundle's JavaScript (V8) heap in a real workerd (`wrangler dev`), over the
 * Chrome DevTools Protocol (scripts/dev/js-heap.mjs): after a forced full collection, after start,
 * after a first predict (iris), after the largest JPEG and WebP the limits allow classified by nsfwjs's
 * MobileNetV2, and after the largest JSON body MAX_BODY_BYTES allows (well-formed, then one the packed
 * reader gives up on); for the bodies also the highest heap sampled while they ran. Beside each: the
 * wasm heaps (tf.js's and the image decoders', from /metrics).
 * Prints one line per step and a JSON summary; docs/memory.md ("Measuring the JavaScript side") has
 * the figures and what the defaults make of them.
 *
 * Usage: node scripts/dev/measure-js-heap.mjs   (takes a minute or two: it builds a repository, measures
 * MobileNetV2 in Node, starts wrangler dev)
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startWranglerDev } from '../tools/launch.mjs'
import { heapRepository, inspectWorker, largestImages, largestJsonBody, peakWhile, wasmHeaps } from './js-heap.mjs'
import { wranglerConfigFor } from '../../test/setup/assets.ts'

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`

/**
 * Runs every step against a started server and returns the readings. `images`: largestImages()'s
 * answer when the caller started it already (it takes seconds of encoding, which can overlap the server's start).
 */
export async function measure(server, { log = () => {}, images: encoding } = {}) {
  const images = await (encoding ?? largestImages())
  const session = await inspectWorker(server.inspectorPort, server.url)
  const steps = []
  const record = async (step, peak, { snapshot = false } = {}) => {
    // usedSize and totalSize are V8's heap; backingStorageSize the ArrayBuffers' bytes outside it (wasm memories apart).
    const { usedSize, totalSize, backingStorageSize = 0 } = await session.afterGc()
    const wasm = await wasmHeaps(server.url)
    // Every buffer still held, wasm memories included: what a dropped decoder or its output would show in.
    const buffers = snapshot ? await session.buffers() : undefined
    steps.push({
      step,
      usedSize,
      totalSize,
      backingStorageSize,
      ...(peak && { peak }),
      wasm,
      ...(buffers && { buffers }),
    })
    log(
      `${step}: V8 heap used ${mb(usedSize)}, total ${mb(totalSize)}, ArrayBuffers ${mb(backingStorageSize)}` +
        (peak
          ? `; while it ran at least ${mb(peak.usedSize)} used, ${mb(peak.totalSize)} total, ${mb(peak.backingStorageSize)} ArrayBuffers`
          : '') +
        `; wasm: tf.js ${mb(wasm.tf)}, decoders ${mb(wasm.jpg + wasm.webp)} now, ${mb(wasm.decoderHighWater)} at most` +
        (buffers
          ? `; all buffers held (every ArrayBuffer, wasm memories included) ${mb(buffers.bytes)}, largest ${buffers.largest.map(mb).join(', ')}`
          : ''),
    )
  }
  const expect200 = async (what, response) => {
    const text = await response.text()
    if (response.status !== 200) throw new Error(`${what}: ${response.status} ${text.slice(0, 500)}`)
  }
  try {
    await record('after start')
    await expect200(
      'iris',
      await fetch(`${server.url}/v1/models/iris:predict`, {
        method: 'POST',
        body: JSON.stringify({ instances: [[5.1, 3.5, 1.4, 0.2]] }),
      }),
    )
    await record('after a first predict (iris)')
    for (const [type, image] of Object.entries(images)) {
      const { peak } = await peakWhile(session, async () =>
        expect200(
          `${type} ${image.width}×${image.height}`,
          await fetch(`${server.url}/v1/models/mobilenet:classify`, {
            method: 'POST',
            headers: { 'content-type': `image/${type}` },
            body: image.bytes,
          }),
        ),
      )
      await record(
        `after the largest ${type.toUpperCase()} (${image.width}×${image.height}, ${image.bytes.byteLength} bytes, decode ${image.decodeBytes} bytes) to MobileNetV2`,
        peak,
        { snapshot: true },
      )
    }
    // The tensor model loaded and run once first, so the readings below are the bodies'.
    await expect200(
      'mobilenet-tensor, 1 row',
      await fetch(`${server.url}/v1/models/mobilenet-tensor:predict`, {
        method: 'POST',
        body: largestJsonBody({ maxBodyBytes: 1024 * 1024 }).body,
      }),
    )
    await record('after a first predict (MobileNetV2, one row as JSON)')
    for (const [broken, zeros] of [
      [false, false],
      [false, true],
      [true, false],
    ]) {
      const { body, rows } = largestJsonBody({ broken, zeros })
      const { peak } = await peakWhile(session, async () => {
        const response = await fetch(`${server.url}/v1/models/mobilenet-tensor:predict`, { method: 'POST', body })
        const text = await response.text()
        // The zeros' 12 MB of rows and one row's run do not fit the 78 MiB heap beside the model, and their
        // copies off the heap would pass what the requests' JavaScript pool has left beside its body: a 413.
        const refused = broken || (zeros && /no room on a fresh wasm heap beside this request's inputs/.test(text))
        if (response.status !== (refused ? 413 : 200))
          throw new Error(`JSON body: ${response.status} ${text.slice(0, 500)}`)
      })
      await record(
        `after the largest JSON body (${body.length} bytes, ${rows} rows${zeros ? ' of zeros: the most numbers, a 413 for its rows beside its inputs' : ''}${broken ? ', not packable: a 413' : ''}) to MobileNetV2`,
        peak,
      )
    }
    // The worst the defaults let concurrent requests do at once: both largest images and two largest
    // JSON bodies (one the packed reader gives up on) to MobileNetV2, all in flight together.
    const { peak } = await peakWhile(session, async () => {
      const json = (broken) =>
        fetch(`${server.url}/v1/models/mobilenet-tensor:predict`, {
          method: 'POST',
          body: largestJsonBody({ broken }).body,
        }).then((r) => r.text().then(() => r.status))
      const photo = (type) =>
        fetch(`${server.url}/v1/models/mobilenet:classify`, {
          method: 'POST',
          headers: { 'content-type': `image/${type}` },
          body: images[type].bytes,
        }).then((r) => r.text().then(() => r.status))
      const statuses = await Promise.all([photo('jpeg'), photo('webp'), json(false), json(true)])
      if (statuses.join() !== '200,200,200,413') throw new Error(`concurrent requests answered ${statuses.join()}`)
    })
    await record('after the four together (the largest JPEG, WebP and two JSON bodies)', peak)
    return steps
  } finally {
    session.close()
  }
}

if (import.meta.main) {
  const work = mkdtempSync(join(tmpdir(), 'js-heap-'))
  // Encoded while the repository is built and the server starts.
  const images = largestImages()
  images.catch(() => {})
  try {
    const repo = await heapRepository(join(work, 'models'))
    const server = await startWranglerDev({
      nice: 10,
      readyTimeoutMs: 300_000,
      configs: [wranglerConfigFor(repo, join(work, 'wrangler.toml'))],
    })
    try {
      const steps = await measure(server, { log: console.log, images })
      console.log(JSON.stringify({ jsHeap: steps }))
    } finally {
      await server.stop()
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}
