/**
 * @module runtime/batcher — adaptive batching, as TF Serving's batching and Triton's dynamic batcher:
 * concurrent requests for one model in this isolate are merged into one run, and every output is
 * split back so each request gets exactly its own rows.
 *
 *   run(a) ─┐                      ┌─ rows of a
 *   run(b) ─┼─ queue (per shape) ──► concat ─► one run ─► split ─┼─ rows of b
 *   run(c) ─┘  flushes at max_batch_size rows or max_queue_delay  └─ rows of c
 *
 * - Only requests whose inputs agree on every dimension but the first (and on dtypes) are merged:
 *   each shape signature has its own queue, so a model with a dynamic non-batch dimension still
 *   batches, never mixing widths.
 * - A request alone in its window, one with more rows than max_batch_size, and one whose inputs
 *   have no common first dimension run as they are, without a copy.
 * - Merging assumes each output row depends only on its input row, which the model's owner asserts
 *   by turning batching on. What can be checked is: an output whose first dimension is not the
 *   merged row count cannot be split, so those requests are rerun one by one and the servable stops
 *   batching for good (one log line).
 * - A merged run that throws is rerun request by request, so one bad request (an out-of-range
 *   index, say) fails alone instead of failing its neighbours; the cost falls only on the error path.
 */
import { memoryGate } from '../cache/memory-gate'
import { log } from '../core/log'
import type { BatchCounters, BatchingOptions, BatchingStatus } from './batching-status'
import { wrapRun } from './servable'
import type { Servable } from './servable'
import type { TensorSpec } from './signature'
import { tensorBytes, tf } from './tf'

export type { BatchCounters, BatchingOptions, BatchingStatus }

interface Waiter {
  inputs: Record<string, tf.Tensor>
  rows: number
  resolve: (outputs: Record<string, tf.Tensor>) => void
  reject: (error: unknown) => void
}

interface Queue {
  key: string
  waiters: Waiter[]
  rows: number
  /** When the batch runs even if it is not full (`Date.now()` of its first request plus the delay). */
  deadline: number
}

/**
 * How often a queued request re-arms its own timer while its batch runs in another request.
 * workerd cancels a request as hung when nothing of its own is pending (a timer, a fetch), even when
 * another request's work is about to settle its promise: measured under `wrangler dev`, waiting on a
 * batch flushed by a neighbour's timer failed with "code had hung and would never generate a
 * response". So every waiter holds a timer of its own until its answer arrives. Short, because a
 * waiter's continuation was also seen to lag behind its answer until its own timer fired: p99 at
 * concurrency 32 was 1.8 s with a 1 s tick and 0.18 s (as unbatched) with 50 ms.
 */
const KEEP_WAITING_MS = 10

/** The batching status of a servable `withBatching` made, or `undefined` for one that does not batch. */
export function batchingOf(servable: Servable): BatchingStatus | undefined {
  return servable.batching
}

/** Why a signature rules batching out before any request: a tensor whose first dimension is fixed, or a scalar. */
function staticObstacle(inputs: TensorSpec[], outputs: TensorSpec[]): string | undefined {
  const fixed = (spec: TensorSpec) => spec.shape !== null && (spec.shape.length === 0 || spec.shape[0] !== -1)
  const input = inputs.find(fixed)
  if (input) return `input '${input.name}' has shape [${input.shape!.join(', ')}], no dynamic batch dimension`
  const output = outputs.find(fixed)
  if (output) return `output '${output.name}' has shape [${output.shape!.join(', ')}], no dynamic batch dimension`
  return undefined
}

/**
 * The request's row count and the key of the requests it may merge with (same input names, dtypes
 * and non-batch dimensions), or `undefined` when its inputs share no first dimension.
 */
function shapeKey(inputs: Record<string, tf.Tensor>): { key: string; rows: number } | undefined {
  const names = Object.keys(inputs).sort()
  let rows: number | undefined
  const parts: string[] = []
  for (const name of names) {
    const t = inputs[name]!
    if (t.rank === 0) return undefined
    if (rows !== undefined && t.shape[0] !== rows) return undefined
    rows = t.shape[0]!
    parts.push(`${JSON.stringify(name)}:${t.dtype}:${t.shape.slice(1).join('x')}`)
  }
  if (rows === undefined || rows === 0) return undefined
  return { key: parts.join('|'), rows }
}

/**
 * Wraps `servable` so that concurrent `run()` calls are merged into one run of the model, up to
 * `maxBatchSize` rows or `maxQueueDelayMs` after the first queued call, whichever comes first.
 * The contract of `Servable.run` holds for each caller: its inputs stay its own, and it gets (and
 * disposes) tensors of exactly its rows. `dispose()` disposes the model.
 */
export function withBatching(servable: Servable, options: BatchingOptions): Servable {
  const model = options.model ?? 'model'
  const counters: BatchCounters = { requests: 0, batches: 0, merged: 0, alone: 0, rerun: 0, maxRows: 0 }
  const queues = new Map<string, Queue>()
  let active = true
  let disposed = false

  const stopBatching = (reason: string) => {
    if (!active) return
    active = false
    log('warn', 'model.batching_off', { model, reason })
  }
  const obstacle = staticObstacle(servable.signature.inputs, servable.signature.outputs)
  if (obstacle) stopBatching(obstacle)

  const alone = (inputs: Record<string, tf.Tensor>) => {
    counters.alone++
    return servable.run(inputs)
  }

  /**
   * A batch's requests run one by one, as they came, counted as `alone` (never merged: no room for the
   * copy) or `rerun` (the merged run failed, or cannot be split). One after another: they would not
   * overlap anyway (one thread), and it keeps one set of outputs in memory.
   */
  const oneByOne = async (waiters: Waiter[], counter: 'alone' | 'rerun') => {
    counters[counter] += waiters.length
    for (const w of waiters) await servable.run(w.inputs).then(w.resolve, w.reject)
  }

  /** Runs the merged batch and hands out the rows; falls back to one run per request when it must. */
  const execute = async (waiters: Waiter[]) => {
    const total = waiters.reduce((n, w) => n + w.rows, 0)
    let outputs: Record<string, tf.Tensor>
    const names = Object.keys(waiters[0]!.inputs)
    // The merged inputs are a copy of every request's, which their runs' figures do not count (each counts
    // its own rows' inputs): reserved for the run, or, where the budget or the heap has no room for them
    // now, the requests run one by one without a copy (their admitted runs hold the room a wait would need).
    const bytes = tensorBytes(waiters.flatMap((w) => Object.values(w.inputs)))
    const release = memoryGate().reserveNow(bytes, `the merged inputs of ${waiters.length} requests to ${model}`, true)
    if (!release) return oneByOne(waiters, 'alone')
    const merged: Record<string, tf.Tensor> = {}
    try {
      for (const name of names)
        merged[name] = tf.concat(
          waiters.map((w) => w.inputs[name]!),
          0,
        )
      outputs = await servable.run(merged)
    } catch {
      // The merged run's error is not reported: each request's own run says what is wrong with it.
      return oneByOne(waiters, 'rerun')
    } finally {
      tf.dispose(Object.values(merged))
      release()
    }
    const unsplit = Object.entries(outputs).find(([, t]) => t.rank === 0 || t.shape[0] !== total)
    if (unsplit) {
      tf.dispose(outputs)
      const [name, t] = unsplit
      stopBatching(
        `output '${name}' has shape [${t.shape.join(', ')}] for a merged batch of ${total} rows, so it cannot be split by request`,
      )
      return oneByOne(waiters, 'rerun')
    }
    const sizes = waiters.map((w) => w.rows)
    const parts: Record<string, tf.Tensor[]> = {}
    try {
      for (const [name, t] of Object.entries(outputs)) parts[name] = tf.split(t, sizes, 0)
    } catch (error) {
      tf.dispose(Object.values(parts).flat())
      throw error
    } finally {
      tf.dispose(outputs)
    }
    counters.batches++
    counters.merged += waiters.length
    counters.maxRows = Math.max(counters.maxRows, total)
    waiters.forEach((w, i) =>
      w.resolve(Object.fromEntries(Object.entries(parts).map(([name, list]) => [name, list[i]!]))),
    )
  }

  const flush = (queue: Queue) => {
    // Every waiter's timer calls this at the deadline, and a full queue ran before it: only the
    // queue still registered runs, once.
    if (queues.get(queue.key) !== queue) return
    queues.delete(queue.key)
    const { waiters } = queue
    if (waiters.length === 1) {
      const [w] = waiters as [Waiter]
      alone(w.inputs).then(w.resolve, w.reject)
      return
    }
    execute(waiters).catch((error: unknown) => {
      for (const w of waiters) w.reject(error)
    })
  }

  const batching: BatchingStatus = {
    options: { ...options },
    counters,
    get active() {
      return active
    },
  }
  const run: Servable['run'] = async (inputs) => {
    counters.requests++
    if (disposed) throw new Error(`${model} was disposed; its batcher takes no more requests`)
    const shape = active ? shapeKey(inputs) : undefined
    if (!shape || shape.rows > options.maxBatchSize) return alone(inputs)
    let queue = queues.get(shape.key)
    // This request would overflow the batch: the batch runs now, without it (as TF Serving closes a batch).
    if (queue && queue.rows + shape.rows > options.maxBatchSize) {
      flush(queue)
      queue = undefined
    }
    if (!queue) {
      queue = { key: shape.key, waiters: [], rows: 0, deadline: Date.now() + options.maxQueueDelayMs }
      queues.set(shape.key, queue)
    }
    const joined = queue
    const answer = new Promise<Record<string, tf.Tensor>>((resolve, reject) =>
      joined.waiters.push({ inputs, rows: shape.rows, resolve, reject }),
    )
    joined.rows += shape.rows
    // The timer lives in this request's context (see KEEP_WAITING_MS): the first to fire runs the batch.
    let settled = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const arm = (ms: number) => {
      timer = setTimeout(() => {
        flush(joined)
        if (!settled) arm(KEEP_WAITING_MS)
      }, ms)
    }
    if (joined.rows >= options.maxBatchSize) flush(joined)
    else arm(Math.max(0, joined.deadline - Date.now()))
    try {
      return await answer
    } finally {
      settled = true
      if (timer !== undefined) clearTimeout(timer)
    }
  }
  const dispose = () => {
    disposed = true
    const stranded = [...queues.values()].flatMap((q) => q.waiters)
    queues.clear()
    if (stranded.length > 0) {
      // Unreachable through the cache: a request holds its lease across run(), and a model is
      // disposed only after its last lease ends. ModelCache.reset() (tests) disposes regardless.
      log('error', 'model.batching_disposed_with_queue', { model, requests: stranded.length })
      const error = new Error(`${model} was disposed with ${stranded.length} request(s) queued for batching`)
      for (const w of stranded) w.reject(error)
    }
    servable.dispose()
  }
  return wrapRun(servable, run, { batching, dispose })
}
