/**
 * @module repository/weights — how many bytes a weights manifest describes.
 *
 * No relative imports and only erasable TypeScript: scripts/build/build-index.mjs imports this file
 * directly, so shard sizes are checked at build time by the code the Worker checks them with.
 */
import type { io } from '@tensorflow/tfjs-core'

const BYTES_PER_ELEMENT: Record<string, number> = {
  float32: 4,
  int32: 4,
  bool: 1,
  complex64: 8,
  uint8: 1,
  uint16: 2,
  float16: 2,
}

/** The byte length a weight entry occupies in its shard, or `undefined` where it cannot be known (strings). */
export function expectedBytes(spec: io.WeightsManifestEntry): number | undefined {
  const dtype = spec.quantization?.dtype ?? spec.dtype
  const size = BYTES_PER_ELEMENT[dtype]
  return size === undefined ? undefined : spec.shape.reduce((n, d) => n * d, 1) * size
}

/** The bytes a list of weight entries occupies, or `undefined` if one of them cannot be known. */
export function manifestBytes(specs: readonly io.WeightsManifestEntry[]): number | undefined {
  let total = 0
  for (const spec of specs) {
    const bytes = expectedBytes(spec)
    if (bytes === undefined) return undefined
    total += bytes
  }
  return total
}
