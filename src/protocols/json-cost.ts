/**
 * @module protocols/json-cost — what reading JSON value by value would cost the isolate, counted before
 * anything is built. A tensor the packed reader (json-tensors.ts) cannot pack is read as plain arrays,
 * and a body it gives up on goes to JSON.parse; both cost far more than the bytes: an 8 MB body of
 * `[0.1,0.5,0.9]` pixels with one string in it took workerd's V8 heap to 150 MB used, 196 MB committed
 * (scripts/dev/measure-js-heap.mjs; docs/memory.md), past an isolate's 128 MB by itself.
 */
import { ApiError } from '../core/errors'

/**
 * Bytes of V8 heap an array or object, and a number, string or literal, cost while a body is read value
 * by value: fitted to that body (554 413 arrays and 1 655 807 numbers, 196 MB committed), where the
 * arrays dominate; a flat array of numbers costs what JSON.parse makes of it, about 8–16 bytes each.
 */
export const JSON_CONTAINER_HEAP_BYTES = 300
export const JSON_VALUE_HEAP_BYTES = 16
/**
 * The most V8 heap a body's values read one by one may take: the headroom the isolate's arithmetic
 * leaves one request's JavaScript (docs/memory.md, "The worst case the defaults allow"). 16 MiB is
 * about 55 000 small arrays, or a million numbers in flat arrays: any envelope, b64 images and named
 * inputs of modest size; a larger tensor must come as rectangular arrays of numbers (or v2 binary
 * data), which the packed reader reads at 8 bytes a number.
 */
export const JSON_GENERAL_MAX_HEAP_BYTES = 16 * 1024 * 1024

/**
 * One pass over the JSON value at `start` of `bytes` (the whole text from 0; from a later offset it
 * stops where that value closes): what reading it value by value costs, in bytes of V8 heap, and the
 * offset of the first byte that opens a level deeper than `maxDepth` (-1 if none; the scan stops
 * there). Brackets inside strings do not count. Bytes, not text: UTF-8 never puts an ASCII byte
 * inside a multi-byte character, so no decoding is needed, and a malformed body is JSON.parse's to report.
 */
export function scanJson(bytes: Uint8Array, start = 0, maxDepth = Infinity): { cost: number; tooDeepAt: number } {
  let containers = 0
  let values = 1 // the scalars: one plus the commas
  let depth = 0
  let inString = false
  let tooDeepAt = -1
  for (let i = start; i < bytes.length; i++) {
    const byte = bytes[i]!
    if (inString) {
      if (byte === 0x5c)
        i++ // a backslash: the next byte is escaped, even a quote
      else if (byte === 0x22) inString = false
    } else if (byte === 0x5b || byte === 0x7b) {
      containers++
      if (++depth > maxDepth) {
        tooDeepAt = i
        break
      }
    } else if (byte === 0x5d || byte === 0x7d) {
      if (--depth === 0 && start > 0) break
    } else if (byte === 0x2c) values++
    else if (byte === 0x22) inString = true
  }
  // A container's first element follows no comma: one plus the commas is the count of the other values.
  return { cost: containers * JSON_CONTAINER_HEAP_BYTES + values * JSON_VALUE_HEAP_BYTES, tooDeepAt }
}

/**
 * What reading the JSON value at `start` of `bytes` value by value costs (scanJson); `undefined` when
 * the value nests deeper than `maxDepth`: a depth check refuses it first, without this cost.
 */
export function jsonHeapCost(bytes: Uint8Array, start = 0, maxDepth = Infinity): number | undefined {
  const { cost, tooDeepAt } = scanJson(bytes, start, maxDepth)
  return tooDeepAt === -1 ? cost : undefined
}

/** 413 when reading `what` value by value would take more than JSON_GENERAL_MAX_HEAP_BYTES of heap (`cost`, from jsonHeapCost). */
export function checkJsonCost(cost: number | undefined, what: string): void {
  if (cost !== undefined && cost > JSON_GENERAL_MAX_HEAP_BYTES) {
    throw new ApiError(
      413,
      `${what} would take ~${cost} bytes of memory to read as JSON arrays and objects, more than the ${JSON_GENERAL_MAX_HEAP_BYTES} one request may take that way; ` +
        'send tensors as rectangular arrays of numbers (TF Serving "instances": [[…]] or "inputs", v2 "data"), or as v2 binary tensor data',
    )
  }
}
