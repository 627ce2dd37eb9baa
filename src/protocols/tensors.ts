/**
 * @module protocols/tensors — JSON values to tensors and back, checked against a model's signature.
 * Every refusal is a 400 that names the input, the index and what was expected.
 */
import { converter, datatypeOf, FLOAT32_MAX, Misfit } from './datatypes'
import type { Converter } from './datatypes'
import type { Config } from '../core/config'
import { badRequest, describeValue } from '../core/errors'
import type { ResolvedVersion } from '../repository/repository'
import type { TensorSpec } from '../runtime/signature'
import { formatShape } from '../runtime/signature'
import { tf } from '../runtime/tf'
import { PackedTensor } from './json-tensors'
import { MAX_RANK } from './limits'
import type { RequestBudget } from './input-transform'
import { reservedTensor } from '../cache/memory-gate'

/** The limits one request is held to: the Worker's vars, narrowed by the model's config.json. */
export interface RequestLimits extends RequestBudget {
  /** Rows in one request, and the setting it comes from (for messages). */
  maxBatch: number
  batchRule: string
  /** Elements across all of the request's inputs: how many are left, out of how many. */
  elements: { left: number; limit: number }
  /** Value ranges per input name. */
  ranges: Record<string, { min?: number; max?: number }>
}

/** The limits for one request to `model`, from the Worker's config and the model's own. */
export function requestLimits(config: Config, model: ResolvedVersion): RequestLimits {
  const own = model.config.max_batch_size
  const fromModel = own !== undefined && own < config.MAX_BATCH_SIZE
  return {
    maxBatch: fromModel ? own : config.MAX_BATCH_SIZE,
    batchRule: fromModel ? `max_batch_size in ${model.name}/config.json` : 'MAX_BATCH_SIZE',
    elements: { left: config.MAX_TENSOR_ELEMENTS, limit: config.MAX_TENSOR_ELEMENTS },
    ranges: model.config.input_limits ?? {},
    imagePixels: { left: config.MAX_REQUEST_IMAGE_PIXELS, limit: config.MAX_REQUEST_IMAGE_PIXELS },
  }
}

/** A JSON array taken apart: its shape and its leaves in row-major order. */
export interface Flat {
  shape: number[]
  values: ArrayLike<unknown>
}

/** Takes `count` elements from the request's budget, refusing the request once it is spent. */
export function spendElements(budget: RequestLimits['elements'], count: number, where: string): void {
  if ((budget.left -= count) < 0) {
    throw badRequest(`${where}: more than ${budget.limit} tensor elements in one request (MAX_TENSOR_ELEMENTS)`)
  }
}

/**
 * Flattens a nested JSON array, checking that it is rectangular (not ragged).
 * `where` names the value in messages, e.g. `input 'image'`; `budget` counts the elements left.
 */
export function flatten(value: unknown, where: string, budget: RequestLimits['elements']): Flat {
  // Read from the body's bytes already (json-tensors.ts): rectangular, numbers only, row-major.
  if (value instanceof PackedTensor) {
    spendElements(budget, value.size, where)
    return value
  }
  const shape: number[] = []
  for (let v = value; Array.isArray(v); v = v[0]) {
    shape.push(v.length)
    if (shape.length > MAX_RANK)
      throw badRequest(`${where}: nested deeper than ${MAX_RANK} levels; no tensor has that many dimensions`)
  }
  // Rectangular or not, the first-element chain gives the size: refuse past the budget before walking.
  const total = shape.reduce((n, d) => n * d, 1)
  spendElements(budget, total, where)
  const values: unknown[] = new Array(total)
  let filled = 0
  // The index path is kept as numbers and turned into text only for a message: building a
  // string per element would cost more than the whole walk.
  const index: number[] = []
  const at = () => `${where}${index.map((i) => `[${i}]`).join('')}`
  const innermost = shape.length - 1
  const walk = (v: unknown, depth: number) => {
    if (!Array.isArray(v))
      throw badRequest(`${at()}: expected an array of ${shape[depth]}, got ${describeValue(v)} (ragged nesting)`)
    if (v.length !== shape[depth]) {
      throw badRequest(`${at()}: expected ${shape[depth]} values like its siblings, got ${v.length} (ragged array)`)
    }
    if (depth === innermost) {
      for (let i = 0; i < v.length; i++) {
        const leaf = v[i]
        if (Array.isArray(leaf)) {
          index.push(i)
          throw badRequest(`${at()}: expected a scalar at depth ${depth + 1}, got an array (ragged nesting)`)
        }
        values[filled++] = leaf
      }
      return
    }
    index.push(0)
    for (let i = 0; i < v.length; i++) {
      index[depth] = i
      walk(v[i], depth + 1)
    }
    index.pop()
  }
  if (shape.length === 0) values[0] = value
  else walk(value, 0)
  return { shape, values }
}

/** Checks a shape against the signature's: rank, then every fixed dimension. */
export function checkShape(spec: TensorSpec, shape: readonly number[], where: string): void {
  if (spec.shape === null) return
  if (shape.length !== spec.shape.length) {
    throw badRequest(
      `${where}: expected rank ${spec.shape.length} with shape ${formatShape(spec.shape)}, got rank ${shape.length} with shape ${formatShape(shape)}`,
    )
  }
  spec.shape.forEach((dim, i) => {
    if (dim !== -1 && dim !== shape[i]) {
      throw badRequest(
        `${where}: dimension ${i} must be ${dim} (shape ${formatShape(spec.shape)}), got ${shape[i]} (shape ${formatShape(shape)})`,
      )
    }
  })
}

/**
 * Converts the leaves to the input's dtype through `convert`, which refuses any value that does
 * not fit exactly; the message names the element by its multi-index.
 */
export function toTypedArray(
  spec: TensorSpec,
  flat: Flat,
  where: string,
  convert: Converter,
): Float32Array | Int32Array | Uint8Array {
  // Numbers read from the body (json-tensors.ts) into a float32 input that takes any number within
  // float32's range (FP32 or FP64 data, no `input_limits`): read as float32 already, all in range.
  if (
    flat instanceof PackedTensor &&
    flat.float32 !== undefined &&
    spec.dtype === 'float32' &&
    convert.floatLimit === FLOAT32_MAX
  )
    return flat.float32
  const { shape } = flat
  // A packed tensor's doubles are not made into a buffer here (below).
  const values = flat instanceof PackedTensor ? { length: flat.size } : flat.values
  const at = (i: number) => {
    const index: number[] = []
    for (let d = shape.length - 1, rest = i; d >= 0; d--) {
      index.unshift(rest % shape[d]!)
      rest = Math.floor(rest / shape[d]!)
    }
    return `${where}${index.map((n) => `[${n}]`).join('')}`
  }
  // A packed tensor's float32 numbers take the converted values in place (an int32 input's, a range-checked
  // float32 input's): each value is read again from the body as a double, so its float32 slot is free to be
  // written, and no second array of the input's size is held beside them (request-memory.ts counts a JSON
  // body 3 ×, not 5 ×). Each tensor of a body has its own region of the reader's buffer. An int32 input
  // takes the numbers for good (a later reader gets the doubles); a float32 one writes them as they were.
  const own = flat instanceof PackedTensor ? flat : undefined
  const out =
    spec.dtype === 'float32'
      ? (own?.float32 ?? new Float32Array(values.length))
      : spec.dtype === 'int32'
        ? (int32Over(own?.takeFloat32()) ?? new Int32Array(values.length))
        : new Uint8Array(values.length)
  let i = 0
  try {
    if (flat instanceof PackedTensor) {
      // Numbers read from the body (json-tensors.ts): their doubles handed over one by one, so no buffer
      // of doubles is held beside `out`. Into a float32 input only the range can fail, checked inline;
      // a value out of range goes to `convert`, which says why.
      const limit = out instanceof Float32Array ? convert.floatLimit : undefined
      flat.eachValue((v, j) => {
        i = j
        out[j] = limit !== undefined && v <= limit && v >= -limit ? v : convert(v)
      })
      return out
    }
    for (; i < values.length; i++) out[i] = convert(values[i])
  } catch (error) {
    // The location is built only for the value that failed: building it per element costs more than the check.
    if (error instanceof Misfit) throw badRequest(`${at(i)}: ${error.message}`)
    throw error
  }
  return out
}

/** An Int32Array over the same bytes as `floats`, or `undefined` without them. */
const int32Over = (floats: Float32Array | undefined) =>
  floats && new Int32Array(floats.buffer, floats.byteOffset, floats.length)

/** Wraps a converter so values outside the configured range are refused. */
function withinRange(convert: Converter, { min, max }: { min?: number; max?: number }, rule: string): Converter {
  return (value) => {
    const v = convert(value)
    if (min !== undefined && v < min) throw new Misfit(`${v} is below the minimum ${min} (${rule})`)
    if (max !== undefined && v > max) throw new Misfit(`${v} is above the maximum ${max} (${rule})`)
    return v
  }
}

/**
 * Builds one input's tensor from its flattened values, checked for batch size, rank, fixed
 * dimensions, and each value's datatype, exactness and configured range. `exact`: the values are
 * already a typed array of the input's dtype that `convert` accepts whole (binary FP32 for a float32
 * input, its non-finite values refused), used as they are unless a range applies.
 */
export async function makeTensor(
  spec: TensorSpec,
  flat: Flat,
  where: string,
  convert: Converter,
  limits: RequestLimits,
  model: string,
  exact = false,
): Promise<tf.Tensor> {
  const batch = flat.shape[0]
  if (spec.shape?.[0] === -1 && batch !== undefined && batch > limits.maxBatch) {
    throw badRequest(`${where}: batch of ${batch} exceeds the limit of ${limits.maxBatch} (${limits.batchRule})`)
  }
  checkShape(spec, flat.shape, where)
  // A tensor with no elements has nothing to infer, and tf.js fails on it in ways that look like
  // ours (a layers model: 'Pass at least one tensor to concat'): refused here, for every path in.
  const empty = flat.shape.indexOf(0)
  if (empty === 0)
    throw badRequest(`${where}: shape ${formatShape(flat.shape)} has no rows; a request needs at least one row`)
  if (empty > 0)
    throw badRequest(
      `${where}: dimension ${empty} of shape ${formatShape(flat.shape)} is 0; an input needs at least one element`,
    )
  const range = Object.hasOwn(limits.ranges, spec.name) ? limits.ranges[spec.name] : undefined
  const checked = range ? withinRange(convert, range, `input_limits in ${model}/config.json`) : convert
  const typed = exact && !range ? (flat.values as Float32Array | Int32Array) : toTypedArray(spec, flat, where, checked)
  // Its bytes on tf.js's heap are reserved in the memory budget before it is made (cache/memory-gate.ts):
  // a request whose input cannot fit beside its model is a 413 with the figures, not a failed allocation.
  return reservedTensor(typed.byteLength, inputWhat(where, flat.shape, spec.dtype), () =>
    tf.tensor(typed, flat.shape, spec.dtype),
  )
}

/** An input tensor as a memory message names it: `input 'x' data (a [3, 224, 224, 3] float32 tensor)`. */
export const inputWhat = (where: string, shape: readonly number[], dtype: string) =>
  `${where} (a ${formatShape(shape)} ${dtype} tensor)`

/** Builds one input's tensor from its nested JSON value, batch dimension included, in the model's own dtype. */
export function tensorFromJSON(
  spec: TensorSpec,
  value: unknown,
  where: string,
  limits: RequestLimits,
  model: string,
): Promise<tf.Tensor> {
  const flat = flatten(value, where, limits.elements)
  return makeTensor(spec, flat, where, converter(datatypeOf(spec.dtype), spec.dtype, where), limits, model)
}

/** A tensor's values as nested JSON arrays, in its dtype (bools as true/false). */
export async function tensorToJSON(tensor: tf.Tensor): Promise<unknown> {
  const nested = await tensor.array()
  if (tensor.dtype !== 'bool') return nested
  const toBool = (v: unknown): unknown => (Array.isArray(v) ? v.map(toBool) : v === 1 || v === true)
  return toBool(nested)
}
