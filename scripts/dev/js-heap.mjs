/**
 * The Worker's JavaScript (V8) heap in a real workerd, read over the Chrome DevTools Protocol, and the
 * inputs that load it most under the default limits. Used by scripts/dev/measure-js-heap.mjs and
 * test/e2e/js-heap.test.ts; docs/memory.md ("Measuring the JavaScript side") has the figures.
 *
 * wrangler dev's inspector proxy (`--inspector-port`) lists one target at `/json` and relays
 * `ws://<host>/ws` to workerd's inspector. workerd runs a `HeapProfiler.collectGarbage` only when the
 * isolate next takes a turn (a request), so after sending it the session pokes the Worker with
 * `GET /v2/health/live` until the collection's answer arrives, then reads `Runtime.getHeapUsage`.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import WebSocket from 'ws'
import { buildIndex, INDEX_FILE } from '../build/build-index.mjs'
import { ROOT } from '../tools/launch.mjs'
import { addZooModel, ZOO } from './zoo.mjs'

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A CDP session with the Worker's isolate behind wrangler dev's inspector on `inspectorPort`. */
export async function inspectWorker(inspectorPort, workerUrl, { timeoutMs = 30_000 } = {}) {
  const deadline = Date.now() + timeoutMs
  let url
  for (;;) {
    try {
      const targets = await (
        await fetch(`http://127.0.0.1:${inspectorPort}/json`, { signal: AbortSignal.timeout(5_000) })
      ).json()
      url = targets.find((t) => t.webSocketDebuggerUrl)?.webSocketDebuggerUrl
      if (url) break
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`the inspector on port ${inspectorPort} lists no target`)
    await sleep(200)
  }
  const ws = new WebSocket(url)
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no WebSocket to ${url} within ${timeoutMs} ms`)), timeoutMs)
    ws.once('open', () => (clearTimeout(timer), resolve()))
    ws.once('error', (error) => (clearTimeout(timer), reject(error)))
  })
  let nextId = 1
  const pending = new Map()
  /** The Worker's JavaScript contexts, as Runtime.enable reports them. */
  const contexts = []
  ws.on('message', (data) => {
    const message = JSON.parse(String(data))
    if (message.method === 'Runtime.executionContextCreated') contexts.push(message.params.context)
    const waiter = pending.get(message.id)
    if (!waiter) return
    pending.delete(message.id)
    if (message.error) waiter.reject(new Error(`${waiter.method}: ${message.error.message}`))
    else waiter.resolve(message.result)
  })
  const send = (method, params = {}) => {
    const id = nextId++
    const answer = new Promise((resolve, reject) => pending.set(id, { method, resolve, reject }))
    ws.send(JSON.stringify({ id, method, params }))
    return answer
  }
  /** Resolves with `promise`'s value, poking the isolate with a cheap request meanwhile; throws past `ms`. */
  const whilePoking = async (promise, ms, what) => {
    let done = false
    let value
    let failure
    promise.then(
      (v) => ((done = true), (value = v)),
      (e) => ((done = true), (failure = e)),
    )
    const end = Date.now() + ms
    while (!done) {
      if (Date.now() > end) throw new Error(`${what}: no answer within ${ms} ms`)
      await fetch(`${workerUrl}/v2/health/live`, { signal: AbortSignal.timeout(5_000) })
        .then((r) => r.arrayBuffer())
        .catch(() => {})
      await sleep(50)
    }
    if (failure) throw failure
    return value
  }
  return {
    /** `Runtime.getHeapUsage` now, without a collection: `{ usedSize, totalSize, ... }`. */
    usage: (ms = timeoutMs) => whilePoking(send('Runtime.getHeapUsage'), ms, 'Runtime.getHeapUsage'),
    /** `Runtime.getHeapUsage` after a full collection. */
    async afterGc() {
      await whilePoking(send('HeapProfiler.collectGarbage'), timeoutMs, 'HeapProfiler.collectGarbage')
      return whilePoking(send('Runtime.getHeapUsage'), timeoutMs, 'Runtime.getHeapUsage')
    },
    /**
     * Every ArrayBuffer the isolate holds after a full collection, WebAssembly memories included (which
     * `backingStorageSize` leaves out): `{ bytes, largest }`, their byte lengths. `Runtime.queryObjects`
     * walks the heap for the objects whose prototype is `ArrayBuffer.prototype` (or SharedArrayBuffer's):
     * what a heap snapshot's `system / JSArrayBufferData` nodes count (read one after the other after the
     * largest JPEG and WebP: 72,625,804 and 72,626,171 bytes, then 72,626,171 both), without V8 serializing
     * the whole heap to the inspector (24 MB of JSON, 8–11 s on a busy machine, where this takes 1.5 s).
     * The handles it takes are released before it returns.
     */
    async buffers() {
      const run = (method, params = {}) => whilePoking(send(method, params), timeoutMs, method)
      await run('HeapProfiler.collectGarbage')
      // Runtime.enable reports the Worker's context (executionContextCreated) before it answers.
      await run('Runtime.enable')
      const contextId = contexts.at(-1)?.id
      const sizes = []
      try {
        for (const name of ['ArrayBuffer', 'SharedArrayBuffer']) {
          const expression = `typeof ${name} === 'function' ? ${name}.prototype : undefined`
          const prototype = await run('Runtime.evaluate', { expression, contextId, objectGroup: 'buffers' })
          if (prototype.result.objectId === undefined) continue
          const { objects } = await run('Runtime.queryObjects', {
            prototypeObjectId: prototype.result.objectId,
            objectGroup: 'buffers',
          })
          const lengths = await run('Runtime.callFunctionOn', {
            objectId: objects.objectId,
            functionDeclaration: 'function () { return this.map((buffer) => buffer.byteLength) }',
            returnByValue: true,
          })
          sizes.push(...lengths.result.value)
        }
      } finally {
        // The array of every buffer would otherwise keep them all alive for the readings after.
        await run('Runtime.releaseObjectGroup', { objectGroup: 'buffers' })
        await run('Runtime.disable')
      }
      sizes.sort((a, b) => b - a)
      return { bytes: sizes.reduce((a, b) => a + b, 0), largest: sizes.slice(0, 4) }
    },
    close: () => ws.close(),
  }
}

/**
 * Samples `Runtime.getHeapUsage` every `everyMs` while `work` runs, and once after it: the highest
 * `usedSize`, `totalSize` and `backingStorageSize` seen (a lower bound of the true peak: V8 answers between the isolate's turns).
 */
export async function peakWhile(session, work, everyMs = 20) {
  let running = true
  const peak = { usedSize: 0, totalSize: 0, backingStorageSize: 0 }
  const note = (u) => {
    for (const key of Object.keys(peak)) peak[key] = Math.max(peak[key], u[key] ?? 0)
  }
  const sampler = (async () => {
    while (running) {
      // While the isolate computes (a model's load, a long parse) the answer waits for its next turn.
      note(await session.usage(300_000))
      await sleep(everyMs)
    }
  })()
  try {
    return { result: await work(), peak }
  } finally {
    running = false
    await sampler
    note(await session.usage())
  }
}

// ------------------------------------------------------------------ the largest images the limits allow

const MiB = 1024 * 1024
/** src/protocols/images/headers.ts's bound of a baseline JPEG's or lossy WebP's decode, for choosing a size just inside MAX_IMAGE_DECODE_BYTES. */
const decodeBytes = (encoded, pixels) =>
  2 * encoded + 4 * pixels + Math.max(0, Math.ceil((encoded + 4 * pixels + MiB) * 1.2) - 16 * MiB)
export const MAX_IMAGE_DECODE_BYTES = 16 * MiB

const require = createRequire(import.meta.url)
const wasmOf = (pkg, file) =>
  new WebAssembly.Module(readFileSync(join(dirname(require.resolve(`${pkg}/package.json`)), file)))

/** chelsea.png (scikit-image, CC0) scaled to `width`×`height` RGBA, bilinear; the last few sizes kept (the JPEG and WebP searches try the same widths). */
async function scaledPhoto(width, height) {
  const key = `${width}×${height}`
  let found = scaled.get(key)
  if (!found) {
    found = await scale(width, height)
    scaled.set(key, found)
    if (scaled.size > 4) scaled.delete(scaled.keys().next().value)
  }
  return found
}
const scaled = new Map()

async function scale(width, height) {
  const { decode } = await import('fast-png')
  source ??= decode(readFileSync(join(ROOT, 'test/fixtures/models/_images/chelsea.png')))
  const src = source
  const c = src.channels
  // Each column's source columns and weight, once rather than per row and channel: the same arithmetic.
  const x0s = new Int32Array(width)
  const x1s = new Int32Array(width)
  const fxs = new Float64Array(width)
  for (let x = 0; x < width; x++) {
    const sx = ((x + 0.5) * src.width) / width - 0.5
    x0s[x] = Math.max(0, Math.floor(sx))
    x1s[x] = Math.min(src.width - 1, x0s[x] + 1)
    fxs[x] = Math.min(1, Math.max(0, sx - x0s[x]))
  }
  const sd = src.data
  const data = new Uint8ClampedArray(width * height * 4)
  for (let y = 0; y < height; y++) {
    const sy = ((y + 0.5) * src.height) / height - 0.5
    const y0 = Math.max(0, Math.floor(sy))
    const y1 = Math.min(src.height - 1, y0 + 1)
    const fy = Math.min(1, Math.max(0, sy - y0))
    const row0 = y0 * src.width
    const row1 = y1 * src.width
    for (let x = 0; x < width; x++) {
      const x0 = x0s[x]
      const x1 = x1s[x]
      const fx = fxs[x]
      const o = (y * width + x) * 4
      for (let k = 0; k < 3; k++) {
        const top = sd[(row0 + x0) * c + k] * (1 - fx) + sd[(row0 + x1) * c + k] * fx
        const bottom = sd[(row1 + x0) * c + k] * (1 - fx) + sd[(row1 + x1) * c + k] * fx
        data[o + k] = top * (1 - fy) + bottom * fy
      }
      data[o + 3] = 255
    }
  }
  return { data, width, height }
}
/** chelsea.png decoded, once. */
let source

/**
 * The largest baseline JPEG and lossy WebP of the photo whose decode MAX_IMAGE_DECODE_BYTES allows
 * (the photo's 3:2 aspect, the widest that fits, in steps of 16 pixels), with what the header promises.
 */
export async function largestImages() {
  const { default: encodeJpeg, init: initJpeg } = await import('@jsquash/jpeg/encode.js')
  const { default: encodeWebp, init: initWebp } = await import('@jsquash/webp/encode.js')
  await initJpeg(wasmOf('@jsquash/jpeg', 'codec/enc/mozjpeg_enc.wasm'))
  await initWebp(wasmOf('@jsquash/webp', 'codec/enc/webp_enc.wasm'))
  const encoders = {
    jpeg: (image) => encodeJpeg(image, { quality: 90, progressive: false, baseline: true }),
    webp: (image) => encodeWebp(image, { quality: 90 }),
  }
  const heightOf = (width) => Math.round((width * 2) / 3)
  /** Whether a `width` image of `encoded` bytes stays within both limits. */
  const within = (width, encoded) =>
    decodeBytes(encoded, width * heightOf(width)) <= MAX_IMAGE_DECODE_BYTES && width * heightOf(width) <= 4_000_000
  /** The widest (a multiple of 16, at least 16) within the limits were its encoding `bytesPerPixel` bytes a pixel. */
  const widestAt = (bytesPerPixel) => {
    let width = 16
    while (within(width + 16, bytesPerPixel * (width + 16) * heightOf(width + 16))) width += 16
    return width
  }
  const out = {}
  for (const [type, encode] of Object.entries(encoders)) {
    // Encoding a 3–4 MP photo takes about a second: the encoded size is predicted from the last
    // encoding's bytes a pixel (which change little with the scale), so that a few encodings land on
    // the widest width that fits while the next 16 pixels do not (the decode bound grows with both
    // pixels and bytes); a width no encoding can fit (0 bytes) is never tried.
    const tried = new Map()
    const fit = async (width) => {
      if (!tried.has(width)) {
        const height = heightOf(width)
        const bytes = new Uint8Array(await encode(await scaledPhoto(width, height)))
        tried.set(width, { bytes, width, height, decodeBytes: decodeBytes(bytes.byteLength, width * height) })
      }
      const found = tried.get(width)
      return within(width, found.bytes.byteLength) ? found : undefined
    }
    let width = widestAt(0)
    for (;;) {
      const found = await fit(width)
      if (found) {
        if (!within(width + 16, 0) || !(await fit(width + 16))) {
          out[type] = found
          break
        }
        width += 16
      } else {
        if (width === 16) throw new Error(`no ${type} of the photo fits MAX_IMAGE_DECODE_BYTES`)
        const predicted = widestAt(tried.get(width).bytes.byteLength / (width * heightOf(width)))
        width = predicted < width ? predicted : width - 16
      }
    }
  }
  return out
}

// ------------------------------------------------------------------ the repository measured

/** A model repository with iris, nsfwjs's MobileNetV2 taking images (`mobilenet`) and the same taking tensors (`mobilenet-tensor`), indexed. */
export async function heapRepository(dir) {
  cpSync(join(ROOT, 'model-assets/iris'), join(dir, 'iris'), { recursive: true })
  const mobilenet = ZOO.find((m) => m.name === 'nsfw-mobilenet-v2')
  await addZooModel(dir, { ...mobilenet, name: 'mobilenet' })
  await addZooModel(dir, { ...mobilenet, name: 'mobilenet-tensor' })
  const config = JSON.parse(readFileSync(join(dir, 'mobilenet-tensor/config.json'), 'utf8'))
  delete config.inputs
  writeFileSync(join(dir, 'mobilenet-tensor/config.json'), `${JSON.stringify(config, null, 2)}\n`)
  const { index, skipped } = await buildIndex(dir, { measure: true })
  if (skipped.length > 0) throw new Error(`${dir}: ${skipped.join('; ')}`)
  writeFileSync(join(dir, INDEX_FILE), JSON.stringify(index))
  return dir
}

/**
 * The largest JSON body MAX_BODY_BYTES (8 MiB) allows to `mobilenet-tensor`: as many 224×224×3 rows
 * of short numbers (`[0.1,0.5,0.9]` a pixel: the most numbers, and nested arrays, a body can hold) as
 * fit. `broken`: the same with its last number a string, which the packed reader (json-tensors.ts)
 * cannot pack: read as plain arrays it would cost more than a request may take (a 413). `zeros`: pixels
 * of `[0,0,0]`, the most numbers a body of nested rows can hold (2.7 bytes a number), so the most the
 * packed reader's 8 bytes a number and their float32 copy cost.
 */
export function largestJsonBody({ maxBodyBytes = 8 * MiB, broken = false, zeros = false } = {}) {
  const pixels = Array.from({ length: 224 * 224 }, (_, i) =>
    zeros ? '[0,0,0]' : `[0.${i % 10},0.${(i >> 3) % 10},0.${(i >> 6) % 10}]`,
  )
  const row = `[${Array.from({ length: 224 }, (_, y) => `[${pixels.slice(y * 224, y * 224 + 224).join(',')}]`).join(',')}]`
  const rows = Math.floor((maxBodyBytes - 32) / (row.length + 1))
  const rowsText = Array(rows).fill(row)
  let body = `{"instances":[${rowsText.join(',')}]}`
  if (broken) body = body.replace(/0\.\d\]\]\]\]\}$/, '"x"]]]]}')
  return { body, rows }
}

/** The wasm heaps now, from /metrics: tf.js's (`warmserve_wasm_heap_bytes`) and each image decoder's (`warmserve_image_decoder_heap_bytes`), 0 where absent. */
export async function wasmHeaps(url) {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text()
  const value = (pattern) => Number(new RegExp(`^${pattern} (\\S+)$`, 'm').exec(text)?.[1] ?? 0)
  return {
    tf: value('warmserve_wasm_heap_bytes'),
    tfHighWater: value('warmserve_wasm_heap_high_water_bytes'),
    jpg: value('warmserve_image_decoder_heap_bytes\\{codec="jpg"\\}'),
    webp: value('warmserve_image_decoder_heap_bytes\\{codec="webp"\\}'),
    decoderHighWater: value('warmserve_image_decoder_heap_high_water_bytes'),
  }
}
