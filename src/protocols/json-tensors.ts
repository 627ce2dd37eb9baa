/**
 * @module protocols/json-tensors — JSON request bodies read straight from their bytes, with each
 * tensor's numbers parsed into a Float64Array instead of nested JavaScript arrays; and tensors
 * written straight into response text.
 *
 * The reader handles the well-formed request and nothing else: any deviation — malformed JSON, a
 * ragged or non-numeric tensor, an empty one, more elements than the limit, a `__proto__` key — makes it answer
 * `undefined`, and the caller takes the general path (JSON.parse, then tensors.ts), whose 400s say
 * what is wrong. A value it does read is exactly what JSON.parse gives: the same doubles (`-0`,
 * subnormals, integers past 2^53 rounded as JSON.parse rounds them), the same last-key-wins objects.
 */
import { checkJsonCost, jsonHeapCost } from './json-cost'
import { MAX_JSON_DEPTH, MAX_RANK } from './limits'

/** A rectangular array of numbers from a request body: its shape and its values in row-major order. */
export class PackedTensor {
  constructor(
    readonly shape: number[],
    readonly values: Float64Array,
  ) {}
}

/**
 * Where in a body tensors are: a path of keys, `*` for any key or index. The reader packs the
 * value there when it is a non-empty rectangular array of numbers; anywhere else arrays stay arrays
 * (an Open Inference Protocol `shape` is a list, not a tensor).
 */
export type TensorPaths = readonly (readonly string[])[]

/** TF Serving's predict: `instances` (row format, bare values) and `inputs` (columnar, whole or by name). */
export const TF_SERVING_TENSORS: TensorPaths = [['instances'], ['inputs'], ['inputs', '*']]
/** The Open Inference Protocol: each input's `data`. */
export const V2_TENSORS: TensorPaths = [['inputs', '*', 'data']]

// Exact powers of ten as doubles: 10^22 is the largest a double holds exactly.
const POW10 = [
  1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
  1e21, 1e22,
]
const TWO_53 = 2 ** 53

/** Thrown inside the reader to give up; never leaves this module. */
class GiveUp {}
const GIVE_UP = new GiveUp()

const decoder = new TextDecoder()

/**
 * Parses a JSON body, packing the tensors at `paths` with at most `maxElements` numbers among
 * them. `undefined` when it cannot: the caller then parses the body the general way.
 */
export function readTensorJson(bytes: Uint8Array, paths: TensorPaths, maxElements: number): unknown {
  try {
    return new Reader(bytes, paths, maxElements).document()
  } catch (error) {
    if (error === GIVE_UP) return undefined
    throw error
  }
}

class Reader {
  private at = 0
  private elements = 0
  private readonly path: string[] = []
  /** Above 0 inside a tensor position that did not pack: nothing within it is a tensor of its own. */
  private unpacked = 0
  constructor(
    private readonly bytes: Uint8Array,
    private readonly paths: TensorPaths,
    private readonly maxElements: number,
  ) {}

  document(): unknown {
    const b = this.bytes
    // TextDecoder drops a UTF-8 byte order mark before JSON.parse sees the text: so does this.
    if (b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) this.at = 3
    this.space()
    const value = this.value(0)
    this.space()
    if (this.at !== b.length) throw GIVE_UP
    return value
  }

  private space(): void {
    const b = this.bytes
    let c = b[this.at]
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++this.at]
  }

  private tensorHere(): boolean {
    const path = this.path
    outer: for (const p of this.paths) {
      if (p.length !== path.length) continue
      for (let i = 0; i < p.length; i++) if (p[i] !== '*' && p[i] !== path[i]) continue outer
      return true
    }
    return false
  }

  private value(depth: number): unknown {
    if (depth >= MAX_JSON_DEPTH) throw GIVE_UP
    const c = this.bytes[this.at]
    if (c === 0x7b) return this.object(depth)
    if (c === 0x5b) {
      if (this.unpacked === 0 && this.tensorHere()) {
        const start = this.at
        const packed = this.tensor()
        if (packed) return packed
        // Read as plain arrays, so the general path sees the whole value and says what is wrong with it:
        // if that costs no more than a request may take (json-cost.ts).
        checkJsonCost(jsonHeapCost(this.bytes, start, MAX_JSON_DEPTH), `'${this.path.join('.')}'`)
        this.at = start
        this.unpacked++
        const plain = this.array(depth)
        this.unpacked--
        return plain
      }
      return this.array(depth)
    }
    if (c === 0x22) return this.string()
    if (c === 0x2d || (c !== undefined && c >= 0x30 && c <= 0x39)) return this.number()
    if (this.word('true')) return true
    if (this.word('false')) return false
    if (this.word('null')) return null
    throw GIVE_UP
  }

  private word(text: string): boolean {
    const b = this.bytes
    for (let i = 0; i < text.length; i++) if (b[this.at + i] !== text.charCodeAt(i)) return false
    this.at += text.length
    return true
  }

  private object(depth: number): Record<string, unknown> {
    const b = this.bytes
    const out: Record<string, unknown> = {}
    this.at++
    this.space()
    if (b[this.at] === 0x7d) {
      this.at++
      return out
    }
    for (;;) {
      if (b[this.at] !== 0x22) throw GIVE_UP
      const key = this.string()
      // JSON.parse makes '__proto__' an own key; an assignment would set the prototype.
      if (key === '__proto__') throw GIVE_UP
      this.space()
      if (b[this.at++] !== 0x3a) throw GIVE_UP
      this.space()
      this.path.push(key)
      out[key] = this.value(depth + 1)
      this.path.pop()
      this.space()
      const c = b[this.at++]
      if (c === 0x7d) return out
      if (c !== 0x2c) throw GIVE_UP
      this.space()
    }
  }

  private array(depth: number): unknown[] {
    const b = this.bytes
    const out: unknown[] = []
    this.at++
    this.space()
    if (b[this.at] === 0x5d) {
      this.at++
      return out
    }
    this.path.push('*')
    for (;;) {
      out.push(this.value(depth + 1))
      this.space()
      const c = b[this.at++]
      if (c === 0x5d) break
      if (c !== 0x2c) throw GIVE_UP
      this.space()
    }
    this.path.pop()
    return out
  }

  /** A string: ASCII without escapes read directly, anything else decoded as JSON.parse would. */
  private string(): string {
    const b = this.bytes
    const start = ++this.at
    let plain = true
    for (;;) {
      const c = b[this.at]
      if (c === undefined || c < 0x20) throw GIVE_UP
      if (c === 0x22) break
      if (c === 0x5c) {
        plain = false
        this.at += 2
        continue
      }
      if (c >= 0x80) plain = false
      this.at++
    }
    const end = this.at++
    if (plain)
      return end - start < 64
        ? String.fromCharCode.apply(null, b.subarray(start, end) as unknown as number[])
        : decoder.decode(b.subarray(start, end))
    try {
      return JSON.parse(decoder.decode(b.subarray(start - 1, end + 1))) as string
    } catch {
      throw GIVE_UP
    }
  }

  /**
   * A number, to the double JSON.parse gives. Up to 2^53 of mantissa and 10^±22 of scale, one
   * multiplication or division by an exact power of ten is correctly rounded (Clinger's fast path);
   * beyond, the number's text goes to the engine's own conversion.
   */
  private number(): number {
    const b = this.bytes
    const start = this.at
    let c = b[this.at]
    const negative = c === 0x2d
    if (negative) c = b[++this.at]
    let mantissa = 0
    let exact = true
    let scale = 0
    if (c === 0x30) c = b[++this.at]
    else if (c !== undefined && c >= 0x31 && c <= 0x39) {
      do {
        mantissa = mantissa * 10 + (c - 0x30)
        c = b[++this.at]
      } while (c !== undefined && c >= 0x30 && c <= 0x39)
      if (mantissa >= TWO_53) exact = false
    } else throw GIVE_UP
    if (c === 0x2e) {
      c = b[++this.at]
      if (c === undefined || c < 0x30 || c > 0x39) throw GIVE_UP
      do {
        mantissa = mantissa * 10 + (c - 0x30)
        scale--
        c = b[++this.at]
      } while (c !== undefined && c >= 0x30 && c <= 0x39)
      if (mantissa >= TWO_53) exact = false
    }
    if (c === 0x65 || c === 0x45) {
      c = b[++this.at]
      let sign = 1
      if (c === 0x2b || c === 0x2d) {
        if (c === 0x2d) sign = -1
        c = b[++this.at]
      }
      if (c === undefined || c < 0x30 || c > 0x39) throw GIVE_UP
      let exponent = 0
      do {
        if (exponent < 100_000) exponent = exponent * 10 + (c - 0x30)
        c = b[++this.at]
      } while (c !== undefined && c >= 0x30 && c <= 0x39)
      scale += sign * exponent
    }
    let value: number
    if (exact && mantissa === 0) value = 0
    else if (exact && scale >= 0 && scale <= 22) value = mantissa * POW10[scale]!
    else if (exact && scale < 0 && scale >= -22) value = mantissa / POW10[-scale]!
    else
      value = Number(
        String.fromCharCode.apply(null, b.subarray(negative ? start + 1 : start, this.at) as unknown as number[]),
      )
    return negative ? -value : value
  }

  /**
   * A non-empty rectangular array of numbers, or `undefined` (and the caller reads it as an array):
   * the first run down gives the rank, the first array closed at each level its length.
   */
  private tensor(): PackedTensor | undefined {
    const b = this.bytes
    const shape: number[] = []
    const counts: number[] = []
    let rank = -1
    let depth = 0
    let values = new Float64Array(Math.max(0, Math.min(1024, this.maxElements - this.elements)))
    let filled = 0
    // Opening the outermost bracket.
    this.at++
    counts.push(0)
    for (;;) {
      this.space()
      const c = b[this.at]
      if (c === 0x5b) {
        // A nested array: only where no number has been seen at this depth.
        if (rank !== -1 && depth >= rank - 1) return undefined
        if (depth + 1 >= MAX_RANK) return undefined
        this.at++
        depth++
        counts[depth] = 0
        continue
      }
      // An empty array, or a closing after a comma: not a tensor this reader packs.
      if (c === 0x5d) return undefined
      if (rank === -1) rank = depth + 1
      else if (depth !== rank - 1) return undefined
      if (filled === values.length) {
        if (this.elements + filled >= this.maxElements) return undefined
        const grown = new Float64Array(Math.min(Math.max(1024, values.length * 2), this.maxElements - this.elements))
        grown.set(values)
        values = grown
      }
      if (c !== 0x2d && (c === undefined || c < 0x30 || c > 0x39)) return undefined
      values[filled++] = this.number()
      counts[depth]!++
      // After a value: commas and closings, each closing checked against its level's length.
      for (;;) {
        this.space()
        const d = b[this.at]
        if (d === 0x2c) {
          this.at++
          break
        }
        if (d !== 0x5d) throw GIVE_UP
        this.at++
        const count = counts[depth]!
        if (shape[depth] === undefined) shape[depth] = count
        else if (shape[depth] !== count) return undefined
        if (depth === 0) {
          this.elements += filled
          return new PackedTensor(shape, filled === values.length ? values : values.slice(0, filled))
        }
        depth--
        counts[depth]!++
      }
      // After a comma at a level above the leaves, the next value must be an array.
      if (depth < rank - 1) {
        this.space()
        if (b[this.at] !== 0x5b) return undefined
      }
    }
  }
}

/** A packed tensor as the nested arrays JSON.parse would have given, for the paths that take those. */
export function unpack(value: unknown): unknown {
  if (!(value instanceof PackedTensor)) return value
  const { shape, values } = value
  let at = 0
  const build = (depth: number): unknown[] =>
    depth === shape.length - 1
      ? Array.from(values.subarray(at, (at += shape[depth]!)))
      : Array.from({ length: shape[depth]! }, () => build(depth + 1))
  return build(0)
}

/** A tensor's values as tf.js's `data()` gives them. */
export type TensorData = Float32Array | Int32Array | Uint8Array

/** One number as JSON.stringify writes it: `null` for NaN and the infinities, `0` for -0. */
const numberText = (v: number): string => (v === v && v !== Infinity && v !== -Infinity ? `${v}` : 'null')

/**
 * The JSON text of `count` values of `data` from `offset`, nested by `shape` (row-major) — byte for
 * byte what JSON.stringify writes for the nested arrays; `bool` data as true/false.
 */
export function tensorText(data: TensorData, shape: readonly number[], bool: boolean, offset = 0): string {
  if (shape.length === 0) return bool ? String(data[offset] === 1) : numberText(data[offset]!)
  const inner = shape[shape.length - 1]!
  const rows = shape.slice(0, -1).reduce((n, d) => n * d, 1)
  if (rows === 0) return nestEmpty(shape)
  // The innermost rows, then brackets around every level above them.
  const parts: string[] = new Array(rows)
  for (let r = 0, at = offset; r < rows; r++) {
    let text = '['
    for (let i = 0; i < inner; i++, at++) {
      if (i > 0) text += ','
      text += bool ? (data[at] === 1 ? 'true' : 'false') : numberText(data[at]!)
    }
    parts[r] = `${text}]`
  }
  let level = parts
  for (let d = shape.length - 2; d >= 0; d--) {
    const size = shape[d]!
    const up: string[] = new Array(level.length / size)
    for (let i = 0; i < up.length; i++) up[i] = `[${level.slice(i * size, (i + 1) * size).join(',')}]`
    level = up
  }
  return level[0]!
}

/** JSON.stringify of nested arrays with a 0 somewhere above the innermost level. */
function nestEmpty(shape: readonly number[]): string {
  const build = (d: number): unknown[] =>
    shape[d] === 0 ? [] : Array.from({ length: shape[d]! }, () => (d === shape.length - 1 ? 0 : build(d + 1)))
  return JSON.stringify(build(0))
}
