/**
 * @module protocols/datatypes — the Open Inference Protocol's datatypes and how each maps onto the
 * dtype a tf.js model holds. Values of another datatype are converted only when every one of
 * them fits the model's dtype exactly; otherwise the request is refused with the first misfit.
 */
import { badRequest, describeValue } from '../core/errors'
import type { DType } from '../runtime/signature'

/** The protocol's tensor datatypes. */
export const DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
] as const
export type Datatype = (typeof DATATYPES)[number]

/** The datatype a model's dtype is served as. */
export function datatypeOf(dtype: DType): Datatype {
  switch (dtype) {
    case 'float32':
      return 'FP32'
    case 'int32':
      return 'INT32'
    case 'bool':
      return 'BOOL'
    default:
      return 'BYTES'
  }
}

const INTEGER_RANGES: Partial<Record<Datatype, [number, number]>> = {
  UINT8: [0, 255],
  UINT16: [0, 65_535],
  UINT32: [0, 4_294_967_295],
  UINT64: [0, Number.MAX_SAFE_INTEGER],
  INT8: [-128, 127],
  INT16: [-32_768, 32_767],
  INT32: [-(2 ** 31), 2 ** 31 - 1],
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
}
/** The largest float32. */
export const FLOAT32_MAX = 3.4028234663852886e38
const FLOAT_MAX: Partial<Record<Datatype, number>> = {
  FP16: 65_504,
  FP32: FLOAT32_MAX,
  FP64: Number.MAX_VALUE,
}
/** Integers a float32 holds exactly. */
const FLOAT32_EXACT_INT = 2 ** 24

/**
 * Checks that `value` is a valid `datatype` value and fits the model's `dtype` exactly.
 * Returns the number to store (booleans as 0/1), or throws a Misfit saying why.
 */
export type Converter = ((value: unknown) => number) & {
  /** Set when the converter takes any number within ±this and nothing else is checked: numbers into a float32 input. */
  floatLimit?: number
}

/** A value that does not fit; the caller adds where it was, which only it knows. */
export class Misfit extends Error {}

/** Builds the converter from a request datatype to a model dtype, or refuses the pair outright. */
export function converter(datatype: Datatype, dtype: DType, where: string): Converter {
  const refuse = (why: string) =>
    badRequest(`${where}: datatype ${datatype} cannot be fed to an input of ${datatypeOf(dtype)}: ${why}`)
  if (dtype !== 'float32' && dtype !== 'int32' && dtype !== 'bool')
    throw badRequest(`${where}: inputs of dtype ${dtype} are not supported`)
  if (datatype === 'BYTES') throw refuse('BYTES carry no numbers')

  if (datatype === 'BOOL') {
    if (dtype !== 'bool') throw refuse('booleans are not numbers')
    return (v) => {
      if (typeof v !== 'boolean') throw new Misfit(`expected true or false (BOOL), got ${describeValue(v)}`)
      return v ? 1 : 0
    }
  }
  if (dtype === 'bool') throw refuse('the input takes booleans')

  const range = INTEGER_RANGES[datatype]
  if (range) {
    const [min, max] = range
    return (v) => {
      if (typeof v !== 'number' || !Number.isInteger(v))
        throw new Misfit(`expected an integer (${datatype}), got ${describeValue(v)}`)
      if (v < min || v > max) throw new Misfit(`${v} is out of ${datatype} range [${min}, ${max}]`)
      if (dtype === 'int32' && (v < -(2 ** 31) || v > 2 ** 31 - 1))
        throw new Misfit(`${v} does not fit the model's INT32`)
      if (dtype === 'float32' && Math.abs(v) > FLOAT32_EXACT_INT) {
        throw new Misfit(`${v} cannot be held exactly in the model's FP32 (integers up to 2^24 can)`)
      }
      return v
    }
  }
  const limit = FLOAT_MAX[datatype]!
  const convert: Converter = (v) => {
    if (typeof v !== 'number') throw new Misfit(`expected a number (${datatype}), got ${describeValue(v)}`)
    if (Math.abs(v) > limit) throw new Misfit(`${v} is out of ${datatype} range`)
    if (dtype === 'int32') {
      if (!Number.isInteger(v) || v < -(2 ** 31) || v > 2 ** 31 - 1) {
        throw new Misfit(`${v} is not an integer the model's INT32 can hold`)
      }
      return v
    }
    // Float to float32 rounds to nearest, as a cast in TensorFlow does; only the range can fail.
    if (Math.abs(v) > FLOAT_MAX.FP32!) throw new Misfit(`${v} is out of the model's FP32 range`)
    return v
  }
  if (dtype === 'float32') convert.floatLimit = Math.min(limit, FLOAT_MAX.FP32!)
  return convert
}
