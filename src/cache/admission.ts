/**
 * @module cache/admission — the cache's memory budget at work: holds bytes for loads and runs once they fit,
 * waits while something under way may make room, and runs inferences in sub-batches that fit.
 * It belongs to the cache (src/cache/model-cache.ts), which creates it, evicts for it and hands it its models;
 * nothing else calls it. The figures are runtime/footprint.ts's; the ledger is memory-ledger.ts.
 */
import { ApiError, ModelUnavailableError } from '../core/errors'
import { log } from '../core/log'
import { MemoryLedger } from './memory-ledger'
import type { Holding } from './memory-ledger'
import type { MemoryGate } from './memory-gate'
import { handOver, heldBytes } from './memory-gate'
import { activationBytes, HEAP_PER_ACTIVATION_BYTE, profiled } from '../runtime/footprint'
import type { Servable } from '../runtime/servable'
import { InputCopies, rowsOf, runInSubBatches } from '../runtime/sub-batches'
import { guardedBackend, isAllocationFailure } from '../runtime/wasm-guard'
import { tensorBytes } from '../runtime/tf'
import type { tf } from '../runtime/tf'

/** Whether the model's figures are the heap's own (measured here or by the index), so that a heap short of them is known to be short. */
const measuredOnHeap = (f: Servable['footprint']) =>
  f.measured === 'heap-1' || f.measured === 'heap-1-2' || f.measured === 'index'

/**
 * One row of a model that is the only one this isolate holds could not get wasm heap, though the
 * heap is the model's alone: its free space is in pieces too small (WebAssembly memory never
 * shrinks). Only a fresh heap has the room back; the request path rebuilds it and serves again.
 */
export class HeapFragmentedError extends ModelUnavailableError {
  constructor(message: string, cause: unknown) {
    super(message, 1, cause)
  }
}

/**
 * No block on the wasm heap for `what`, with every idle model evicted. With no lease but the caller's, the
 * heap is this model's alone: it is fragmented (the request path rebuilds it and serves again). Otherwise
 * the models in use hold the rest: 503, retry.
 */
export function heapShortError(key: string, what: string, leases: number, error: Error): ModelUnavailableError {
  return leases <= 1
    ? new HeapFragmentedError(
        `${key}: the wasm heap, held by this model alone, had no block for ${what} (${error.message}): it is fragmented`,
        error,
      )
    : new ModelUnavailableError(
        `${key}: the wasm heap had no room for ${what} (${error.message}) with every idle model evicted; retry`,
        1,
        error,
      )
}

/** No room in the budget now, and nothing under way that would make some: 503, retry soon, no backoff. */
export class BudgetBusyError extends ModelUnavailableError {
  constructor(message: string) {
    super(message, 1)
  }
}

/** A model as admission sees it: the cache's resident. */
export interface AdmittedModel {
  readonly key: string
  readonly servable: Servable
  /** Bytes it holds at rest (weights and kernel state). */
  readonly bytes: number
  /** The first request's measurement, for a model whose warmup could not run. */
  measuring?: Promise<void>
}

/** What admission needs of the cache: to evict idle models, and to know how many leases are out. */
export interface Evictor {
  makeRoom(bytes: number, key?: string): void
  /** Evicts the least recently used idle model other than `except`; false when there is none. */
  evictIdle(except: string): boolean
  leases(): number
  /** Takes `bytes` of the requests' JavaScript pool at once if free (CacheOptions.reserveJavaScript), else undefined. */
  reserveJavaScript(bytes: number): (() => void) | undefined
}

export class Admission {
  /** Who holds how many of the budget's bytes: models, loads in progress, runs. */
  readonly ledger: MemoryLedger
  /** Runs, decoder starts and inputs waiting for room: each holds a lease, so a lease of theirs is no reason to wait. */
  private runWaiters = 0

  constructor(
    budgetBytes: number,
    private readonly cache: Evictor,
  ) {
    this.ledger = new MemoryLedger(budgetBytes)
  }

  /**
   * The budget as the builders of inputs see it (memory-gate.ts): an image decoder's resting heap held
   * for good once it starts, a decode or an input's rows reserved while they are made.
   */
  readonly gate: MemoryGate = {
    reserve: async (bytes, what, onHeap) => {
      const ticket = { input: what }
      this.refuseBeyond(bytes, 0, what)
      await this.reserve(ticket, 'input', bytes, what)
      // Tensors go on tf.js's heap, which must have them too: idle models give it back (the model in use is leased).
      if (onHeap) this.heapRoom('', bytes)
      return (keep) => {
        if (keep === undefined || !this.ledger.bytesOf(ticket)) this.ledger.release(ticket)
        else this.ledger.hold(ticket, 'input', keep)
      }
    },
    reserveNow: (bytes, what, onHeap) => {
      const ticket = { input: what }
      // No model is evicted for it: a reload costs more than what the copy saves.
      if (!this.ledger.fits(bytes)) return undefined
      if (onHeap && !this.heapRoom('', bytes, false)) return undefined
      this.ledger.hold(ticket, 'input', bytes)
      return () => this.ledger.release(ticket)
    },
    hold: async (holder, bytes, what) => {
      if (this.ledger.bytesOf(holder) >= bytes) return
      this.refuseBeyond(bytes, 0, what)
      await this.reserve(holder, 'decoder', bytes, what)
    },
  }

  /** 413 for `bytes` that cannot fit the budget beside `modelBytes` and the decoders' heaps, with every other model evicted. */
  private refuseBeyond(bytes: number, modelBytes: number, what: string): void {
    const decoders = this.ledger.used('decoder')
    const room = this.ledger.limit - decoders - modelBytes
    if (bytes <= room) return
    throw new ApiError(
      413,
      `${what} needs ${bytes} bytes; the cache budget of ${this.ledger.limit} bytes (CACHE_BUDGET_BYTES) has ${Math.max(0, room)} ` +
        `beside ${modelBytes ? `the model's ${modelBytes} bytes and ` : ''}the image decoders' heaps (${decoders} bytes); send fewer rows or smaller inputs`,
    )
  }

  /**
   * Holds `bytes` for `holder` once they fit: evicts idle models first, then waits while loads or runs
   * under way (or leases that will end) may make room. With nothing to wait for, a 503.
   */
  async reserve(holder: object, kind: Holding, bytes: number, what: string, key?: string): Promise<void> {
    for (;;) {
      this.cache.makeRoom(bytes, key)
      if (this.ledger.fits(bytes)) return this.ledger.hold(holder, kind, bytes)
      await this.roomChange(kind, bytes, what)
    }
  }

  /** Waits for the ledger to change, or throws when nothing under way can change it. */
  private async roomChange(kind: Holding, bytes: number, what: string): Promise<void> {
    const leases = this.cache.leases()
    // A run, a decoder's start or an input is asked for by a request that holds a lease: its own lease is no reason to wait.
    const leased = kind === 'run' || kind === 'decoder' || kind === 'input'
    if (this.ledger.transient() === 0 && leases - this.runWaiters - (leased ? 1 : 0) <= 0) {
      const free = this.ledger.limit - this.ledger.used()
      if (kind === 'input' || kind === 'decoder') {
        // Every idle model is evicted and no one else holds a lease: what is held is this request's
        // model, its own inputs and the decoders' heaps, so these bytes cannot fit this request at all.
        throw new ApiError(
          413,
          `${what} needs ${bytes} bytes; ${free} of the cache budget's ${this.ledger.limit} bytes (CACHE_BUDGET_BYTES) are free ` +
            `beside the model in use (${this.ledger.used('resident')} bytes), this request's inputs (${this.ledger.used('input')} bytes) ` +
            `and the image decoders' heaps (${this.ledger.used('decoder')} bytes); send fewer rows or smaller inputs`,
        )
      }
      throw new BudgetBusyError(
        `memory budget full: ${what} needs ${bytes} bytes, ${free} of the ${this.ledger.limit} bytes are free (CACHE_BUDGET_BYTES)`,
      )
    }
    if (leased) this.runWaiters++
    try {
      await this.ledger.next()
    } finally {
      if (leased) this.runWaiters--
    }
  }

  /**
   * Runs one inference on `resident`, admitted against the budget: its activations are reserved for the
   * length of the run; rows beyond what fits run in sub-batches that do (runtime/sub-batches.ts).
   * @throws ApiError 413 when one row cannot fit beside the model; BudgetBusyError (503) when nothing frees room
   */
  async run(resident: AdmittedModel, inputs: Record<string, tf.Tensor>): Promise<Record<string, tf.Tensor>> {
    const f = resident.servable.footprint
    if (f.measured === 'pending') {
      if (!resident.measuring) {
        const first = this.measureFirst(resident, inputs)
        resident.measuring = first.then(
          () => {},
          () => void (resident.measuring = undefined),
        )
        return first
      }
      // Concurrent first requests wait for the measurement, then run admitted like any other.
      await resident.measuring
      return this.run(resident, inputs)
    }
    const elements = Object.values(inputs).reduce((n, t) => n + t.size, 0)
    const rows = rowsOf(inputs) || 1
    const need = (r: number) => activationBytes(f, r, (elements / rows) * r) ?? this.ledger.limit
    const room = this.ledger.limit - resident.bytes
    if (need(1) > room) {
      throw new ApiError(
        413,
        `${resident.key}: one row needs ${need(1)} bytes of activations beside the model's ${resident.bytes} bytes, ` +
          `more than the cache budget of ${this.ledger.limit} bytes (CACHE_BUDGET_BYTES); send smaller inputs`,
      )
    }
    const fitting = (free: number, want: number) => {
      let r = want
      while (r > 1 && need(r) > free) r = Math.max(1, Math.min(r - 1, Math.floor((r * free) / need(r))))
      return need(r) <= free ? r : 0
    }
    const splittable = rowsOf(inputs) !== undefined
    // The heap, not only the budget, must have room: a kernel whose own allocation fails inside the
    // module aborts it (the backend is then rebuilt), so a run starts only where its need fits.
    const heapFits = (r: number) => this.heapRoom(resident.key, need(r))
    const runner = Object.create(resident.servable, {
      run: { value: (feeds: Record<string, tf.Tensor>) => this.runWithRoom(resident, feeds) },
    }) as Servable
    // The request's inputs hold their bytes (memory-gate.ts) until its run is admitted with all its rows: a
    // run's figure was measured with its rows' inputs made inside it, so the run's reservation takes their
    // place, and until then their room is this run's to take. A run split in sub-batches keeps them held to
    // the end (each sub-batch's rows are a copy), unless it has to wait for room.
    const tensors = Object.values(inputs)
    const offloadable = splittable && rows > 1 && tensors.every((t) => t.dtype !== 'string')
    let releaseCopies: (() => void) | undefined
    // A run of one row that found the heap short with this model alone (fragmented, as it stood) is run
    // again with the inputs off the heap before the heap is rebuilt for it. The copies are JavaScript
    // beyond what the request reserved for its body (WebAssembly memory never shrinks: the heap they leave
    // stays the isolate's), so they take their bytes from the requests' pool at once, or the inputs stay.
    const copies = new InputCopies(
      (error) => offloadable && error instanceof HeapFragmentedError,
      () => {
        releaseCopies = this.cache.reserveJavaScript(tensorBytes(tensors))
        if (releaseCopies === undefined) return false
        handOver(tensors)
        return true
      },
    )
    try {
      return await runInSubBatches(
        runner,
        inputs,
        splittable ? rows : 1,
        async (remaining) => {
          const want = splittable ? fitting(room, remaining) : 1
          const ticket = { run: resident.key }
          for (;;) {
            const own = heldBytes(tensors)
            this.cache.makeRoom(Math.max(0, need(want) - own))
            let r = fitting(this.ledger.limit - this.ledger.used() + own, want)
            // Split, the inputs stay whole on the heap beside each sub-batch's copy of its rows (the copy is
            // what the run's figure counts): they stay held where the sub-batches fit beside them. Where not,
            // the run takes their room as a whole run does, rather than wait on room nothing else may free.
            let split = splittable && r > 0 && r < rows && own > 0
            if (split) {
              this.cache.makeRoom(need(want))
              const beside = fitting(this.ledger.limit - this.ledger.used(), want)
              if (beside > 0) r = beside
              else split = false
            }
            // Each check may probe the heap and evict: once a size.
            let fits = r > 0 && heapFits(r)
            while (r > 1 && !fits) {
              r = Math.max(1, Math.floor(r / 2))
              fits = heapFits(r)
            }
            if (r > 0 && !fits && offloadable && !copies.held && copies.take(inputs)) {
              // One row has no room on the heap beside all the rows' inputs: the inputs leave it, and each
              // sub-batch is made from their JavaScript copies.
              continue
            }
            if (r > 0 && !fits && measuredOnHeap(f)) {
              // Held by this model alone, the heap is fragmented: the request path rebuilds it and serves again.
              throw heapShortError(
                resident.key,
                'a run of one row',
                this.cache.leases(),
                new Error(
                  `it needs ${need(1)} bytes, the heap (at most ${guardedBackend()!.heap().maxBytes} bytes) has less free`,
                ),
              )
            }
            if (r > 0) {
              if (!split) handOver(tensors)
              this.ledger.hold(ticket, 'run', need(r))
              return { rows: splittable ? r : remaining, done: () => this.ledger.release(ticket) }
            }
            // Waiting, it holds its inputs no longer: they are on the heap either way, and two requests each
            // waiting for room the other's inputs hold would wait for good.
            handOver(tensors)
            await this.roomChange('run', need(1), `a run of ${resident.key}`)
          }
        },
        copies,
      )
    } finally {
      releaseCopies?.()
    }
  }

  /**
   * Whether the wasm heap can give `bytes` now (its free space and what it may still grow), evicting
   * idle models other than `key` until it can or none is left. Always true off the wasm backend.
   */
  private heapRoom(key: string, bytes: number, evict = true): boolean {
    const backend = guardedBackend()
    if (!backend) return true
    for (;;) {
      const { bytes: size, maxBytes } = backend.heap()
      // Growth alone is enough: no need to probe the free space.
      if (maxBytes - size >= bytes) return true
      if (maxBytes - size + backend.fillFree().release() >= bytes) return true
      if (!evict || !this.cache.evictIdle(key)) return false
    }
  }

  /**
   * Runs one (sub-)batch; when the wasm heap cannot give a tensor, evicts idle models (least recently
   * used first) and runs it again; with none left, runs its rows in halves. A single row that still
   * cannot get heap is a 503 with the figures: the heap is held by models in use, and it may be retried.
   */
  private async runWithRoom(
    resident: AdmittedModel,
    feeds: Record<string, tf.Tensor>,
  ): Promise<Record<string, tf.Tensor>> {
    for (;;) {
      try {
        return await resident.servable.run(feeds)
      } catch (error) {
        if (!isAllocationFailure(error)) throw error
        if (this.cache.evictIdle(resident.key)) continue
        // The heap's free space is there but in pieces (WebAssembly memory never shrinks, and what
        // loads and evictions left behind is scattered): half the rows need blocks half the size.
        const rows = rowsOf(feeds)
        if (rows !== undefined && rows > 1) {
          const half = Math.ceil(rows / 2)
          const runner = Object.create(resident.servable, {
            run: { value: (part: Record<string, tf.Tensor>) => this.runWithRoom(resident, part) },
          }) as Servable
          return runInSubBatches(runner, feeds, rows, async () => ({ rows: half, done: () => {} }))
        }
        throw heapShortError(resident.key, 'one row', this.cache.leases(), error)
      }
    }
  }

  /**
   * The first request to a model whose warmup could not run (an input with unknown non-batch
   * dimensions): its activations are unknown, so it reserves all the room that is free and is
   * profiled; later requests are admitted by its bytes per input element.
   */
  private async measureFirst(
    resident: AdmittedModel,
    inputs: Record<string, tf.Tensor>,
  ): Promise<Record<string, tf.Tensor>> {
    const f = resident.servable.footprint
    const ticket = { run: resident.key }
    // Its inputs' room is part of what it takes (see `run`).
    handOver(Object.values(inputs))
    const free = () => this.ledger.limit - this.ledger.used()
    // All the room that is free, evicting only when none is (evicting every idle model for one
    // measurement would cost more than it protects).
    for (this.cache.makeRoom(1); free() <= 0; this.cache.makeRoom(1)) {
      await this.roomChange('run', 1, `the first run of ${resident.key}`)
    }
    const reserved = free()
    this.ledger.hold(ticket, 'run', reserved)
    try {
      const { outputs, peakBytes: tensorPeak } = await profiled(resident.servable, inputs)
      const peakBytes = Math.ceil(tensorPeak * HEAP_PER_ACTIVATION_BYTE)
      const elements = Object.values(inputs).reduce((n, t) => n + t.size, 0)
      Object.assign(f, {
        perElement: peakBytes / Math.max(1, elements),
        activationBytes: 0,
        rowBytes: peakBytes / (rowsOf(inputs) || 1),
        measured: 'first-request',
      })
      log(peakBytes > reserved ? 'warn' : 'info', 'model.measured', {
        model: resident.key,
        elements,
        activationBytes: peakBytes,
        reservedBytes: reserved,
      })
      return outputs
    } finally {
      this.ledger.release(ticket)
    }
  }
}
