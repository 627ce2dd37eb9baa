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
 * Runs `inputs` (`rows` rows) through `servable` in sub-batches of the sizes `next` grants, each run
 * only after its grant; an output whose first dimension is not its sub-batch's rows cannot be joined,
 * and throws. The inputs stay the caller's; the caller disposes the outputs.
 */
export async function runInSubBatches(
  servable: Servable,
  inputs: Record<string, tf.Tensor>,
  rows: number,
  next: (remaining: number) => Promise<RowGrant>,
): Promise<Record<string, tf.Tensor>> {
  const parts: Record<string, tf.Tensor>[] = []
  let joined = false
  try {
    for (let start = 0; start < rows;) {
      const grant = await next(rows - start)
      const take = Math.min(grant.rows, rows - start)
      // All rows at once: the inputs as they are, without a copy.
      const feeds =
        take === rows
          ? inputs
          : Object.fromEntries(Object.entries(inputs).map(([name, t]) => [name, tf.slice(t, start, take)]))
      try {
        parts.push(await servable.run(feeds))
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
