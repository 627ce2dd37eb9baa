/**
 * @module protocols/v2/binary — the Open Inference Protocol's binary tensor data extension: raw
 * tensor bytes to values, and the bytes after the header split by input (http/v2-body.ts reads and
 * writes the HTTP bodies).
 *
 * A request with `Inference-Header-Content-Length: N` carries its JSON inference header in the
 * first N bytes and raw tensor bytes after it, in the order of the inputs that say
 * `parameters.binary_data_size`. Outputs come back the same way when asked for. Raw bytes skip
 * JSON number parsing entirely, which is most of the work for an image.
 * @see https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/binary_data_extension.md
 */
import type { Datatype } from '../datatypes'
import { badRequest } from '../../core/errors'

/** Bytes per element of each datatype with a fixed size (BYTES has none). */
const ELEMENT_BYTES: Partial<Record<Datatype, number>> = {
  BOOL: 1,
  UINT8: 1,
  INT8: 1,
  UINT16: 2,
  INT16: 2,
  FP16: 2,
  UINT32: 4,
  INT32: 4,
  FP32: 4,
  UINT64: 8,
  INT64: 8,
  FP64: 8,
}

/** The datatypes whose little-endian bytes a typed array views as they are. */
const VIEWS: Partial<
  Record<Datatype, new (buffer: ArrayBufferLike, offset: number, length: number) => ArrayLike<number>>
> = {
  UINT8: Uint8Array,
  INT8: Int8Array,
  UINT16: Uint16Array,
  INT16: Int16Array,
  UINT32: Uint32Array,
  INT32: Int32Array,
  FP32: Float32Array,
  FP64: Float64Array,
}

/** Half-precision bits to a number (IEEE 754 binary16). */
function fromHalf(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1
  const exponent = (bits >> 10) & 0x1f
  const fraction = bits & 0x3ff
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024)
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024)
}

/**
 * Reads `count` elements of `datatype` from little-endian raw bytes (the extension's byte order,
 * which is also every Workers host's, so typed arrays read them as they are).
 * Non-finite floats and booleans other than 0 and 1 are refused here, as JSON cannot carry them.
 */
export function decodeBinary(
  datatype: Datatype,
  bytes: Uint8Array,
  count: number,
  where: string,
): ArrayLike<number | boolean> {
  const size = ELEMENT_BYTES[datatype]
  if (size === undefined) throw badRequest(`${where}: binary data of datatype ${datatype} is not supported`)
  if (bytes.byteLength !== count * size) {
    throw badRequest(
      `${where}: shape holds ${count} elements of ${size} bytes (${count * size}) but binary_data_size is ${bytes.byteLength}`,
    )
  }
  // A view where the tensor is aligned for its element size (readBytes places it so when it copies),
  // else a copy that is.
  const aligned = bytes.byteOffset % 8 === 0
  const buffer = aligned ? bytes.buffer : bytes.slice().buffer
  const start = aligned ? bytes.byteOffset : 0
  const view = <T>(Type: new (buffer: ArrayBufferLike, offset: number, length: number) => T) =>
    new Type(buffer, start, count)
  let values: ArrayLike<number | boolean>
  const Type = VIEWS[datatype]
  if (Type) values = view(Type)
  else
    switch (datatype) {
      case 'BOOL': {
        const raw = view(Uint8Array)
        const bad = raw.findIndex((b) => b > 1)
        if (bad !== -1) throw badRequest(`${where}[${bad}]: BOOL bytes must be 0 or 1, got ${raw[bad]}`)
        values = Array.from(raw, (b) => b === 1)
        break
      }
      case 'FP16':
        values = Array.from(view(Uint16Array), fromHalf)
        break
      // Beyond 2^53 a Number is not exact; the datatype check then refuses it as out of range.
      case 'UINT64':
        values = Array.from(view(BigUint64Array), Number)
        break
      case 'INT64':
        values = Array.from(view(BigInt64Array), Number)
        break
      default:
        throw badRequest(`${where}: binary data of datatype ${datatype} is not supported`)
    }
  if (datatype.startsWith('FP')) {
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) throw badRequest(`${where}[${i}]: ${values[i]} is not a finite number`)
    }
  }
  return values
}

/** Splits the bytes after the header among the inputs that declare `binary_data_size`, in order. */
export function splitBinary(sizes: (number | undefined)[], binary: Uint8Array | undefined): (Uint8Array | undefined)[] {
  let offset = 0
  const parts = sizes.map((size, i) => {
    if (size === undefined) return undefined
    if (!binary || offset + size > binary.byteLength) {
      throw badRequest(
        `inputs[${i}]: binary_data_size ${size} runs past the ${binary?.byteLength ?? 0} bytes after the inference header`,
      )
    }
    const part = binary.subarray(offset, offset + size)
    offset += size
    return part
  })
  if (binary && offset !== binary.byteLength) {
    throw badRequest(
      `${binary.byteLength - offset} bytes after the inference header belong to no input (binary_data_size adds up to ${offset})`,
    )
  }
  return parts
}
