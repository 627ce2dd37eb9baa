/**
 * @module runtime/sub-batches — runs a request's rows in sub-batches that fit the memory budget, and
 * joins the outputs, so the answer is that of one run. Rows are independent in a batched model, so
 * splitting along the first axis and concatenating the outputs gives the same numbers.
 */
import type { Servable } from './servable'
import { tf } from './tf'

/** Rows the next sub-batch may have, and what to call once it has run (the admission's release). */
export interface RowGrant {
  rows: number
  done(): void
}

/** The rows of a request whose inputs share a first dimension, else undefined (it cannot be split). */
export function rowsOf(inputs: Record<string, tf.Tensor>): number | undefined {
  let rows: number | undefined
  for (const t of Object.values(inputs)) {
    if (t.rank === 0 || (rows !== undefined && t.shape[0] !== rows)) return undefined
    rows = t.shape[0]
  }
  return rows
}

/**
 * A request's inputs moved off the wasm heap: each tensor's values copied into JavaScript and the tensor
 * disposed, each sub-batch then made from the copies. For a run whose one row does not fit on the heap
 * beside all its rows' inputs: the heap then holds one sub-batch's rows, not every row (the copies are
 * within the JavaScript the request reserved for its body's numbers, traffic/request-memory.ts).
 */
export class InputCopies {
  private copies: Map<string, { values: ArrayLike<number>; shape: number[]; dtype: tf.DataType }> | undefined

  /**
   * `retryOn`: whether a sub-batch's failure is one that moving the inputs off the heap may mend (the
   * caller's judgement: a heap short for one row); it is then run again from the copies. `taking`: called
   * before the inputs are taken, false when they may not be (the caller reserves the copies' bytes and
   * ends the inputs' reservations).
   */
  constructor(
    private readonly retryOn: (error: unknown) => boolean = () => false,
    private readonly taking: () => boolean = () => true,
  ) {}

  /** Whether `error` is mended by taking the inputs off the heap, which are still on it. */
  mends(error: unknown): boolean {
    return !this.held && this.retryOn(error)
  }

  /** Whether the inputs are held here, off the heap. */
  get held(): boolean {
    return this.copies !== undefined
  }

  /** Copies `inputs` (numeric, with rows) into JavaScript and disposes them; false (nothing done) when the caller says no. */
  take(inputs: Record<string, tf.Tensor>): boolean {
    if (!this.taking()) return false
    this.copies = new Map(
      Object.entries(inputs).map(([name, t]) => [
        name,
        { values: t.dataSync() as ArrayLike<number>, shape: t.shape, dtype: t.dtype },
      ]),
    )
    tf.dispose(Object.values(inputs))
    return true
  }

  /** Rows `start` to `start + take` of each input, as new tensors on the heap. */
  rows(start: number, take: number): Record<string, tf.Tensor> {
    return Object.fromEntries(
      [...this.copies!].map(([name, { values, shape, dtype }]) => {
        const row = shape.slice(1).reduce((n, d) => n * d, 1)
        const part = (values as Float32Array).subarray(start * row, (start + take) * row)
        return [name, tf.tensor(part, [take, ...shape.slice(1)], dtype)]
      }),
    )
  }
}

/**
 * Runs `inputs` (`rows` rows) through `servable` in sub-batches of the sizes `next` grants, each run
 * only after its grant; an output whose first dimension is not its sub-batch's rows cannot be joined,
 * and throws. The inputs stay the caller's, unless `next` moves them into `copies` (disposing them),
 * from which the sub-batches after are made; the caller disposes the outputs.
 */
export async function runInSubBatches(
  servable: Servable,
  inputs: Record<string, tf.Tensor>,
  rows: number,
  next: (remaining: number) => Promise<RowGrant>,
  copies?: InputCopies,
): Promise<Record<string, tf.Tensor>> {
  const parts: Record<string, tf.Tensor>[] = []
  let joined = false
  try {
    for (let start = 0; start < rows;) {
      const grant = await next(rows - start)
      const take = Math.min(grant.rows, rows - start)
      // All rows at once: the inputs as they are, without a copy.
      const feeds = copies?.held
        ? copies.rows(start, take)
        : take === rows
          ? inputs
          : Object.fromEntries(Object.entries(inputs).map(([name, t]) => [name, tf.slice(t, start, take)]))
      try {
        parts.push(await servable.run(feeds))
      } catch (error) {
        // Short of heap for its rows beside the whole inputs: this sub-batch again, made from their copies.
        if (!copies?.mends(error) || !copies.take(inputs)) throw error
        continue
      } finally {
        if (feeds !== inputs) tf.dispose(feeds)
        grant.done()
      }
      const unsplit = Object.entries(parts.at(-1)!).find(([, t]) => t.rank === 0 || t.shape[0] !== take)
      if (unsplit && take !== rows) {
        throw new Error(
          `output '${unsplit[0]}' has shape [${unsplit[1].shape.join(', ')}] for ${take} rows, so sub-batches cannot be joined`,
        )
      }
      start += take
    }
    const outputs =
      parts.length === 1
        ? parts[0]!
        : Object.fromEntries(
            Object.keys(parts[0]!).map((name) => [
              name,
              tf.concat(
                parts.map((p) => p[name]!),
                0,
              ),
            ]),
          )
    joined = true
    return outputs
  } finally {
    // The pieces go once joined (a single piece is the answer itself), and all of them on failure.
    if (!joined || parts.length > 1) for (const p of parts) tf.dispose(p)
  }
}
