/**
 * @module runtime/batching-status — what a batching servable reports (runtime/batcher.ts makes it):
 * a leaf of types, so the servable can name it without importing the batcher that wraps it.
 */
export interface BatchingOptions {
  /** Rows in one merged run; a request with more runs alone. */
  maxBatchSize: number
  /** How long the first request of a batch waits for company before the batch runs. */
  maxQueueDelayMs: number
  /** Names the model in log lines and errors, e.g. `digits/1`. */
  model?: string
}

/** What the batcher has done; counters only, since a log line per batch would drown the logs. */
export interface BatchCounters {
  /** Requests that went through `run()`. */
  requests: number
  /** Merged runs: one run of the model for two or more requests. */
  batches: number
  /** Requests answered from a merged run. */
  merged: number
  /** Requests run on their own: alone in their window, too many rows, no batch dimension, or no batching. */
  alone: number
  /** Requests rerun one by one because their merged run failed or its outputs could not be split. */
  rerun: number
  /** Most rows in one merged run. */
  maxRows: number
}

/** A batching servable's settings, counters, and whether it still merges. */
export interface BatchingStatus {
  readonly options: Readonly<BatchingOptions>
  readonly counters: Readonly<BatchCounters>
  /** False once the model showed it cannot batch (see the module comment); then every request runs alone. */
  readonly active: boolean
}
