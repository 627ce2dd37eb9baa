// Measures what one model needs of tf.js's wasm heap, in a process of its own: bundled by
// scripts/build/memory/measure.mjs with the Worker's own wasm instantiation and allocation guard
// (src/runtime/wasm.ts, src/runtime/wasm-guard.ts) and run as `node probe.bundle.mjs <request JSON>`.
// It prints one JSON line with the figures (see measure.mjs for what each one means).
//
// Two methods, each on fresh wasm instances (nothing a previous model left in the heap counts):
// - `fill`: the heap's free space is taken first (malloc'd 64 KiB blocks, held), and the heap may
//   then grow only to exactly what an allocation asks for (not by Emscripten's ~20 % steps), so its
//   growth while the model loads and runs is the model's peak need, to a page (64 KiB). After the
//   run the free space is filled again: what is left is live, the model's resting bytes (weights and
//   kernel state). Fast, but the held blocks change where the allocator puts things: measured against
//   the next method, its peaks are up to 13 % high at one row.
// - `bisect`: the least heap cap (runtime/wasm-guard.ts's `maxHeapBytes`) at which a fresh instance
//   loads the model and runs it, to a page: a search stepping out from the `fill` peak by 1, 2, 4…
//   pages, then bisection. What "fits" means. It cannot see below the initial memory (16 MiB).
import { loadGraphModel } from '@tensorflow/tfjs-converter'
import * as tf from '@tensorflow/tfjs-core'
import { loadLayersModel } from '@tensorflow/tfjs-layers'
import { memoryBytes } from '../../../src/runtime/footprint.ts'
import { buildServable } from '../../../src/runtime/servable.ts'
import { bundledWasmModule, instantiateWasmBackend } from '../../../src/runtime/wasm.ts'
import { WasmAllocationError } from '../../../src/runtime/wasm-guard.ts'
import { artifactsOf } from './artifacts.mjs'

const PAGE = 65_536
/** Far above any model an isolate could hold, so that the cap never decides a `fill` measurement. */
const UNCAPPED = 2 ** 31

/** How growth behaves: `exact` grows the heap to the page an allocation needs; `frozen` refuses growth. */
const growth = { mode: 'normal', memory: undefined }

// The Worker's instantiation calls WebAssembly.instantiate(module, imports) with the guard's imports:
// here the resize import records the size asked for, and the memory grows to exactly that.
const instantiate = WebAssembly.instantiate.bind(WebAssembly)
WebAssembly.instantiate = async (module, imports) => {
  let asked = 0
  const env = imports.env
  const resize = env.emscripten_resize_heap
  env.emscripten_resize_heap = (requested) => {
    if (growth.mode === 'frozen') return 0
    asked = requested >>> 0
    return resize(requested)
  }
  const instance = await instantiate(module, imports)
  const memory = instance.exports.memory
  const grow = WebAssembly.Memory.prototype.grow
  memory.grow = function (pages) {
    if (growth.mode === 'exact') pages = Math.min(pages, Math.ceil((asked - this.buffer.byteLength) / PAGE))
    return grow.call(this, pages)
  }
  growth.memory = memory
  return instance
}

const heap = () => growth.memory.buffer.byteLength

/** A fresh wasm instance as tf.js's active backend; the previous one, with everything in it, goes. */
async function freshBackend(maxHeapBytes) {
  if (tf.findBackend('wasm')) tf.removeBackend('wasm')
  const backend = await instantiateWasmBackend(bundledWasmModule, { maxHeapBytes })
  tf.registerBackend('wasm', () => backend, 0)
  if (!(await tf.setBackend('wasm'))) throw new Error("tf.setBackend('wasm') failed")
  return backend
}

/** Takes the heap's free space without growing it: blocks of 64 KiB, then 4 KiB, then 256 B. Returns the bytes taken and the release. */
function fill(backend) {
  const wasm = backend.wasm
  const before = growth.mode
  growth.mode = 'frozen'
  const blocks = []
  let bytes = 0
  try {
    for (const size of [PAGE, 4096, 256]) {
      for (;;) {
        let p
        try {
          p = wasm._malloc(size)
        } catch (error) {
          if (error instanceof WasmAllocationError) break
          throw error
        }
        blocks.push(p)
        bytes += size
      }
    }
  } finally {
    growth.mode = before
  }
  return { bytes, release: () => blocks.forEach((p) => wasm._free(p)) }
}

const isGraph = (artifacts) => artifacts.format === 'graph-model' || Array.isArray(artifacts.modelTopology?.node)

/** Zeros for every input at `rows` rows; `shapes` fills dimensions the model leaves open (by input name). */
function feedsFor(model, graph, rows, shapes, signature) {
  // As runtime/servable.ts reads them: a graph's declared signature first, then its placeholders.
  const declared = (name) => {
    const dims = signature?.inputs?.[name]?.tensorShape?.dim
    return dims ? dims.map((d) => Number(d.size ?? -1)) : undefined
  }
  const specs = graph
    ? model.inputs.map((info, i) => ({
        name: model.inputNodes[i],
        shape: declared(model.inputNodes[i]) ?? info.shape,
        dtype: info.dtype,
      }))
    : model.inputs.map((t) => ({ name: t.sourceLayer.name, shape: t.shape, dtype: t.dtype }))
  return specs.map((spec) => {
    // The config may name a signature-less graph's input as the Worker does, after its tensor.
    const given = shapes?.[spec.name] ?? shapes?.[`${spec.name}:0`]
    const shape = (spec.shape ?? given ?? []).map((d, i) =>
      d === null || d < 0 ? (i === 0 ? rows : (given?.[i] ?? -1)) : d,
    )
    if (spec.shape == null || shape.some((d) => d < 0))
      throw new Error(
        `input ${spec.name} has dimensions only a request tells ([${(spec.shape ?? []).map((d) => d ?? -1).join(', ')}]): an image block in its config.json gives them`,
      )
    return { name: spec.name, tensor: tf.zeros(shape, spec.dtype ?? 'float32') }
  })
}

/** An output in two numbers, to tell a run that computed from one that failed inside C and went on. */
function summary(values) {
  let sum = 0
  let squares = 0
  for (const v of values) {
    sum += v
    squares += v * v
  }
  return { n: values.length, sum, squares }
}

/** Whether two runs gave the same outputs (XNNPACK and tf.js's own kernels may differ in rounding). */
function sameAnswer(a, b) {
  const close = (x, y) => Math.abs(x - y) <= 1e-3 * Math.max(1, Math.abs(x), Math.abs(y))
  return (
    a.length === b.length &&
    a.every((o, i) => o.n === b[i].n && close(o.sum, b[i].sum) && close(o.squares, b[i].squares))
  )
}

/**
 * Runs of each measurement: a model serves more than one request. Its first run leaves the heap laid
 * out differently from the runs after (kernel state made during that run sits between its
 * activations), and the next runs of the same rows do not always fit where the first one's
 * activations were: @vladmandic/human's nanodet needs 56.7 MB for its load and one run, 77.6 MB for
 * two; nsfwjs's MobileNetV2 (a layers model) 56.5, 61.3, then 66.3 MB for three. A fourth run grew
 * neither, nor a third any graph model of the zoo; the Worker's heap held 79.2 and 67.0 MB after its
 * warmup and requests (docs/memory.md, "Runs, not one").
 */
const RUNS = 3

/**
 * Loads the model on the active backend and runs it RUNS times on `rows` rows (fewer once `enough()` says
 * the figure is past what matters: a model refused for its size is not run again); returns heap marks.
 */
async function loadAndRun(artifacts, rows, shapes, marks = () => {}, enough = () => false) {
  const graph = isGraph(artifacts)
  const tensorsBefore = tf.memory().numBytes
  const handler = tf.io.fromMemory({ ...artifacts })
  const model = graph ? await loadGraphModel(handler) : await loadLayersModel(handler)
  const weightBytes = tf.memory().numBytes - tensorsBefore
  marks('loaded')
  const feeds = feedsFor(model, graph, rows, shapes, artifacts.signature)
  const inputRowBytes = feeds.reduce((n, f) => n + f.tensor.size * 4, 0) / rows
  const batchFixed = graph ? model.inputs.some((i) => i.shape?.[0] === 1) : model.inputs.some((t) => t.shape[0] === 1)
  let answer
  try {
    for (let run = 1; run <= RUNS && (run === 1 || !enough()); run++) {
      let outputs
      if (graph) {
        const map = Object.fromEntries(feeds.map((f) => [f.name, f.tensor]))
        try {
          outputs = model.execute(map, model.outputNodes)
        } catch (error) {
          if (!/executeAsync/.test(String(error))) throw error
          outputs = await model.executeAsync(map, model.outputNodes)
        }
      } else {
        outputs = model.predictOnBatch(feeds.length === 1 ? feeds[0].tensor : feeds.map((f) => f.tensor))
      }
      const list = Array.isArray(outputs) ? outputs : outputs instanceof tf.Tensor ? [outputs] : Object.values(outputs)
      answer = []
      for (const y of list) answer.push(summary(await y.data()))
      tf.dispose(list)
    }
  } finally {
    tf.dispose(feeds.map((f) => f.tensor))
  }
  marks('ran')
  return { model, weightBytes, batchFixed, inputRowBytes, answer }
}

/** The `fill` method for `rows` rows: peak growth over a full heap, and live bytes after the run. */
async function measureFill(artifacts, rows, shapes, stopAboveBytes = Infinity) {
  await freshBackend(UNCAPPED)
  const backend = tf.backend()
  const start = heap()
  const first = fill(backend)
  // What the backend itself holds once started: the heap less its free space.
  const baseHeapBytes = start - first.bytes
  const filled = heap()
  growth.mode = 'exact'
  let loadPeak = 0
  const { model, weightBytes, batchFixed, inputRowBytes, answer } = await loadAndRun(
    artifacts,
    rows,
    shapes,
    (at) => {
      if (at === 'loaded') loadPeak = heap() - filled
    },
    () => baseHeapBytes + heap() - filled > stopAboveBytes,
  )
  const peak = heap() - filled
  const after = fill(backend)
  const resting = heap() - after.bytes - filled
  after.release()
  growth.mode = 'normal'
  model.dispose()
  first.release()
  return {
    baseHeapBytes,
    weightBytes,
    batchFixed,
    inputRowBytes,
    loadPeakBytes: loadPeak,
    peakBytes: peak,
    restingBytes: resting,
    answer,
  }
}

/**
 * Whether a fresh instance capped at `cap` bytes loads the model and runs `rows` rows, with the
 * answer of an uncapped run (`reference`): an allocation that fails inside C may be reported by a
 * kernel only as a warning, and the run go on to answer something else.
 */
async function fitsUnder(artifacts, rows, shapes, cap, reference) {
  growth.mode = 'normal'
  await freshBackend(cap)
  let model
  try {
    let answer
    ;({ model, answer } = await loadAndRun(artifacts, rows, shapes))
    return reference === undefined || sameAnswer(answer, reference)
  } catch (error) {
    if (
      error instanceof WasmAllocationError ||
      /allocation|Aborted|memory access out of bounds|wasm backend/.test(String(error))
    )
      return false
    throw error
  } finally {
    model?.dispose()
  }
}

/** The initial memory, 16 MiB, in pages: a floor no cap goes under, so the search cannot see below it. */
const FLOOR_PAGES = 256

/**
 * The least heap, to a page, in which a fresh instance loads the model and runs `rows` rows. The
 * search starts at `hint` (the fill's figure, which the least heap is within a page or two of) and
 * steps away from it by 1, 2, 4… pages until one cap fits and the next fails, then bisects between
 * them: 2–4 loads for a good hint (a bisection over a fixed 15 % bracket took 9–11), the same answer
 * (the least cap that fits, to a page, both ends of the bracket checked).
 */
async function measureBisect(artifacts, rows, shapes, hint, reference) {
  const fits = (pages) => fitsUnder(artifacts, rows, shapes, pages * PAGE, reference)
  const start = Math.max(FLOOR_PAGES, Math.ceil((hint || 128 * 2 ** 20) / PAGE))
  // `high` fits and `low` does not (or is below the floor); the least heap is in (low, high].
  let high = start
  let low = start
  if (await fits(start)) {
    for (let step = 1; ; step *= 2) {
      if (high === FLOOR_PAGES) return high * PAGE
      low = Math.max(FLOOR_PAGES, high - step)
      if (!(await fits(low))) break
      high = low
    }
  } else {
    for (let step = 1; ; step *= 2) {
      high = low + step
      if (high * PAGE > UNCAPPED) throw new Error(`no heap cap up to ${UNCAPPED} bytes runs the model at ${rows} rows`)
      if (await fits(high)) break
      low = high
    }
  }
  while (high - low > 1) {
    const mid = (low + high) >> 1
    if (await fits(mid)) high = mid
    else low = mid
  }
  return high * PAGE
}

/** What warmserve counts today, as the Worker's load (runtime/servable.ts) measures it. */
async function measureCounted(artifacts) {
  await freshBackend(UNCAPPED)
  const { servable } = await buildServable(artifacts)
  try {
    return { ...servable.footprint, memoryBytes: memoryBytes(servable.footprint) }
  } finally {
    servable.dispose()
  }
}

async function main() {
  const request = JSON.parse(process.argv[2])
  tf.env().set('IS_NODE', false)
  const artifacts = artifactsOf(request.dir)
  const out = {}
  const rowsList = request.rows ?? [1, 4]
  for (const task of request.tasks ?? ['fill']) {
    if (task === 'fill') {
      out.fill = {}
      for (const rows of rowsList) {
        const m = await measureFill(artifacts, rows, request.shapes, request.stopAboveBytes)
        out.fill[rows] = m
        // A fixed batch has no 4 rows; a model that cannot run one row in an isolate needs no more figures.
        if (m.batchFixed || m.baseHeapBytes + m.peakBytes > (request.stopAboveBytes ?? Infinity)) break
      }
    } else if (task === 'bisect') {
      out.bisect = {}
      for (const rows of out.fill ? Object.keys(out.fill).map(Number) : rowsList) {
        // Starting at the fill's figure, which is close: a few trials instead of a dozen.
        const filled = out.fill?.[rows]
        if (filled && filled.baseHeapBytes + filled.peakBytes > (request.stopAboveBytes ?? Infinity)) break
        const hint = request.hints?.[rows] ?? (filled ? filled.baseHeapBytes + filled.peakBytes : undefined)
        out.bisect[rows] = await measureBisect(artifacts, rows, request.shapes, hint, filled?.answer)
        if (out.fill?.[1]?.batchFixed || request.batchFixed) break
      }
    } else if (task === 'counted') {
      out.counted = await measureCounted(artifacts)
    }
  }
  for (const m of Object.values(out.fill ?? {})) delete m.answer
  process.stdout.write(`${JSON.stringify(out)}\n`)
}

main().catch((error) => {
  process.stdout.write(`${JSON.stringify({ error: error instanceof Error ? error.message : String(error) })}\n`)
  process.exitCode = 1
})
