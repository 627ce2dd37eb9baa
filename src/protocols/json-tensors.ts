/**
 * @module protocols/json-tensors — JSON request bodies read straight from their bytes, with each
 * tensor's numbers parsed into a Float32Array (and JSON.parse's doubles on demand) instead of nested
 * JavaScript arrays; and tensors written straight into response text.
 *
 * The reader handles the well-formed request and nothing else: any deviation — malformed JSON, a
 * ragged or non-numeric tensor, an empty one, more elements than the limit, a `__proto__` key — makes it answer
 * `undefined`, and the caller takes the general path (JSON.parse, then tensors.ts), whose 400s say
 * what is wrong. A value it does read is exactly what JSON.parse gives: the same doubles (`-0`,
 * subnormals, integers past 2^53 rounded as JSON.parse rounds them), the same last-key-wins objects;
 * a tensor's float32 values are exactly those doubles rounded to float32.
 */
import { FLOAT32_MAX } from './datatypes'
import { checkJsonCost, jsonHeapCost } from './json-cost'
import { MAX_JSON_DEPTH, MAX_RANK } from './limits'

/** Calls `each` with every value of a packed tensor as JSON.parse's double, row-major. */
export type EachDouble = (each: (value: number, index: number) => void) => void

/**
 * A rectangular array of numbers from a request body: its shape, and its values in row-major order
 * twice over — `float32`, each value as a float32 input holds it (`Math.fround` of JSON.parse's
 * double), read with the body; and JSON.parse's doubles themselves, read again from the body's bytes
 * only when asked for (an int32 input, a range check): most inputs are float32, and a double is dearer
 * to get exactly than the float32 it rounds to. `eachValue` hands them over one by one, so an input that
 * needs them holds no buffer of doubles (8 bytes a number) beside its own typed array.
 */
export class PackedTensor {
  private exact: Float64Array | EachDouble
  private floats: Float32Array | undefined
  /** How many values. */
  readonly size: number
  constructor(
    readonly shape: number[],
    values: Float64Array | EachDouble,
    float32?: Float32Array,
  ) {
    this.exact = values
    this.floats = float32
    this.size = typeof values === 'function' ? shape.reduce((n, d) => n * d, 1) : values.length
  }

  /**
   * Each value as a float32, when every value's double is within float32's range (a float32 input
   * takes them all as they are); `undefined` otherwise, and the doubles say which one is out of range.
   */
  get float32(): Float32Array | undefined {
    return this.floats
  }

  /**
   * The float32 values' buffer, handed over to be written with other values (an int32 input's, in place:
   * protocols/tensors.ts); from then on `float32` is `undefined`, so a later reader of these numbers (the
   * same body built again for a shadow version, say) takes the doubles.
   */
  takeFloat32(): Float32Array | undefined {
    const floats = this.floats
    this.floats = undefined
    return floats
  }

  /** Points the float32 values at `from` in `buffer`, a copy of them (the reader's, once the body is read). */
  moveTo(buffer: Float32Array, from: number): void {
    if (this.floats) this.floats = buffer.subarray(from, from + this.size)
  }

  /** JSON.parse's doubles, row-major, in a buffer of their own (kept). */
  get values(): Float64Array {
    if (typeof this.exact === 'function') {
      const out = new Float64Array(this.size)
      this.exact((v, i) => (out[i] = v))
      this.exact = out
    }
    return this.exact
  }

  /** Calls `each` with every value's double in row-major order, read again from the body unless already held. */
  eachValue(each: (value: number, index: number) => void): void {
    if (typeof this.exact === 'function') this.exact(each)
    else this.exact.forEach(each)
  }

  /** The same values under another shape of the same size (a flat `data` under its declared `shape`). */
  reshaped(shape: number[]): PackedTensor {
    return new PackedTensor(
      shape,
      typeof this.exact === 'function' ? (each) => this.eachValue(each) : this.exact,
      this.float32,
    )
  }
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
/** The bounds float32Into() puts either side of a double it computed with rounded digits: far wider than its error (below 2^-45). */
const SLACK = 2 ** -40

/** Thrown inside the reader to give up; never leaves this module. */
class GiveUp {}
const GIVE_UP = new GiveUp()

const decoder = new TextDecoder()

/**
 * Frees an ArrayBuffer's memory now rather than at V8's next collection: `transfer(0)` detaches it, and
 * every view of it reads as empty from then on. For buffers nothing reads any more whose bytes would
 * otherwise count against the isolate until V8 collects (it does so for ArrayBuffers only once 64 MiB more
 * lie outside its heap than at its last collection). A buffer that cannot be detached is left to it.
 */
export function freeBuffer(buffer: ArrayBufferLike | undefined): void {
  if (!(buffer instanceof ArrayBuffer) || buffer.detached) return
  try {
    buffer.transfer(0)
  } catch {
    // Not detachable (a wasm memory's buffer, one the runtime holds): the collector's.
  }
}

/** The reader of each document read packed, by the document: what releasePacked frees. */
const readers = new WeakMap<object, Reader>()

/**
 * Frees the packed numbers of a document readTensorJson returned (one buffer for all its tensors): every
 * PackedTensor of it reads as empty afterwards. For a request whose answer is written (http/body.ts).
 */
export function releasePacked(document: unknown): void {
  if (typeof document === 'object' && document !== null) readers.get(document)?.release()
}

/** The commas of `bytes` from `at` on, strings' included (a bound, not a count of values). */
function commasFrom(bytes: Uint8Array, at: number): number {
  let n = 0
  for (let i = at; i < bytes.length; i++) if (bytes[i] === 0x2c) n++
  return n
}

/**
 * Parses a JSON body, packing the tensors at `paths` with at most `maxElements` numbers among
 * them. `undefined` when it cannot: the caller then parses the body the general way.
 */
export function readTensorJson(bytes: Uint8Array, paths: TensorPaths, maxElements: number): unknown {
  try {
    const reader = new Reader(bytes, paths, maxElements)
    const document = reader.document()
    if (typeof document === 'object' && document !== null) readers.set(document, reader)
    return document
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
  /** The float32 values of the body's tensors, and how many of them are taken (`tensor()`). */
  private floats: Float32Array | undefined
  private floatsUsed = 0
  /** The tensors read, and where their float32 values start in `floats`. */
  private readonly packed: [PackedTensor, number][] = []
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
    // The float32 buffer was made for the most numbers the body could hold: when its numbers fill less
    // than half of it, they move to a buffer of their size, so that a request keeps only its numbers while
    // it runs (the large one is garbage at once).
    if (this.floats && this.floatsUsed * 2 < this.floats.length) {
      const fitted = this.floats.slice(0, this.floatsUsed)
      for (const [tensor, from] of this.packed) tensor.moveTo(fitted, from)
      // The reader lives on in the tensors' doubles (read on demand): it must not keep the large buffer,
      // which nothing reads now.
      freeBuffer(this.floats.buffer)
      this.floats = fitted
    }
    this.packed.length = 0
    return value
  }

  /** Frees the numbers' buffer (freeBuffer): the document's PackedTensors read as empty from then on. */
  release(): void {
    freeBuffer(this.floats?.buffer)
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

  // The last number scanned: its digits as a double (exact below 2^53), its power of ten, how many
  // of its digits were added past 2^53 (each rounding once), its sign and where its text starts.
  private mantissa = 0
  private scale = 0
  private rounded = 0
  private negative = false
  private start = 0

  /** Scans one number's text (JSON's grammar, or give up), leaving its parts in the fields above. */
  private scan(): void {
    // A local index, stored back once: the loops below run per digit of every number in a tensor.
    const b = this.bytes
    let at = this.at
    this.start = at
    let c = b[at]
    const negative = c === 0x2d
    if (negative) c = b[++at]
    let mantissa = 0
    let rounded = 0
    let scale = 0
    if (c === 0x30) c = b[++at]
    else if (c !== undefined && c >= 0x31 && c <= 0x39) {
      do {
        if (mantissa >= TWO_53) rounded++
        mantissa = mantissa * 10 + (c - 0x30)
        c = b[++at]
      } while (c !== undefined && c >= 0x30 && c <= 0x39)
    } else throw GIVE_UP
    if (c === 0x2e) {
      c = b[++at]
      if (c === undefined || c < 0x30 || c > 0x39) throw GIVE_UP
      do {
        if (mantissa >= TWO_53) rounded++
        mantissa = mantissa * 10 + (c - 0x30)
        scale--
        c = b[++at]
      } while (c !== undefined && c >= 0x30 && c <= 0x39)
    }
    if (mantissa >= TWO_53) rounded++
    if (c === 0x65 || c === 0x45) {
      c = b[++at]
      let sign = 1
      if (c === 0x2b || c === 0x2d) {
        if (c === 0x2d) sign = -1
        c = b[++at]
      }
      if (c === undefined || c < 0x30 || c > 0x39) throw GIVE_UP
      let exponent = 0
      do {
        if (exponent < 100_000) exponent = exponent * 10 + (c - 0x30)
        c = b[++at]
      } while (c !== undefined && c >= 0x30 && c <= 0x39)
      scale += sign * exponent
    }
    this.at = at
    this.mantissa = mantissa
    this.scale = scale
    this.rounded = rounded
    this.negative = negative
  }

  /** The last scanned number's text, to the engine's own conversion (correctly rounded, as JSON.parse). */
  private engine(): number {
    const b = this.bytes
    const value = Number(
      String.fromCharCode.apply(
        null,
        b.subarray(this.negative ? this.start + 1 : this.start, this.at) as unknown as number[],
      ),
    )
    return this.negative ? -value : value
  }

  /**
   * A number, to the double JSON.parse gives. Up to 2^53 of mantissa and 10^±22 of scale, one
   * multiplication or division by an exact power of ten is correctly rounded (Clinger's fast path);
   * beyond, the number's text goes to the engine's own conversion.
   */
  private number(): number {
    this.scan()
    const { mantissa, scale } = this
    let value: number
    if (this.rounded === 0 && mantissa === 0) value = 0
    else if (this.rounded === 0 && scale >= 0 && scale <= 22) value = mantissa * POW10[scale]!
    else if (this.rounded === 0 && scale < 0 && scale >= -22) value = mantissa / POW10[-scale]!
    else return this.engine()
    return this.negative ? -value : value
  }

  /**
   * Writes the next number into `into` at `at` as a float32 input holds it: the float32 of the double
   * JSON.parse gives (the typed array's store rounds as `Math.fround` does), or NaN, returning false, when
   * that double is outside float32's range (which only the doubles can report). Where the double is
   * exact (Clinger's fast path), its float32. Where digits past 2^53 were rounded (a float32 printed as
   * a double has 17 digits), the double computed is within 2^-45 of the number (two roundings per such
   * digit, one for the power of ten); the bounds 2^-40 either side of it hold the number, and so its
   * correctly rounded double, and when both bounds round to one float32, so does that double (fround
   * is monotonic). Otherwise — a float32 rounding boundary within 2^-40, or an extreme scale — the
   * engine converts the text. Written here rather than returned: a double handed back from a call the
   * optimizer does not inline is boxed, one heap number for every number of a tensor (35.5 MB of V8's
   * heap, sampled, for the two largest JSON bodies at once).
   */
  private float32Into(into: Float32Array, at: number): boolean {
    this.scan()
    const { mantissa, scale, rounded, negative } = this
    if (mantissa === 0) {
      into[at] = negative ? -0 : 0
      return true
    }
    if (scale >= -22 && scale <= 22 && rounded <= 64) {
      const value = scale >= 0 ? mantissa * POW10[scale]! : mantissa / POW10[-scale]!
      // Exact, and below 2^53 · 10^22: within float32's range.
      if (rounded === 0) {
        into[at] = negative ? -value : value
        return true
      }
      if (value <= 1e38) {
        const low = Math.fround(value * (1 - SLACK))
        if (low === Math.fround(value * (1 + SLACK))) {
          into[at] = negative ? -low : low
          return true
        }
      }
    }
    const value = this.engine()
    if (value > FLOAT32_MAX || value < -FLOAT32_MAX) {
      into[at] = NaN
      return false
    }
    into[at] = value
    return true
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
    // One buffer for every tensor of the body (each a view of its part), made at the first with room for
    // every number the rest of the body can hold, within the elements left: one more than its commas (each
    // number but an array's last is followed by one), so exactly the numbers of a body of tensors, and at
    // most 2 bytes a byte of body (`0,`); nothing outgrown for the collector. Moved once to a buffer of their
    // size when they fill less than half of it (`document`; docs/memory.md, "Requests' JavaScript"). Made
    // for half the body's bytes instead, the largest body's 6.6 MB of numbers took a 15.5 MB buffer first.
    const values = (this.floats ??= new Float32Array(
      Math.max(0, Math.min(commasFrom(b, this.at) + 1, this.maxElements - this.elements)),
    ))
    const base = this.floatsUsed
    let filled = base
    let inRange = true
    const start = this.at
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
      // Full: past the elements left (the rest of the body holds no more numbers than the buffer).
      if (filled === values.length) return undefined
      if (c !== 0x2d && (c === undefined || c < 0x30 || c > 0x39)) return undefined
      // False where the double is past float32's range (NaN written): only the doubles, read if asked for, can say which.
      if (!this.float32Into(values, filled++)) inRange = false
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
          const count = filled - base
          this.elements += count
          this.floatsUsed = filled
          const end = this.at
          const packed = new PackedTensor(
            shape,
            (each) => this.doubles(start, end, count, each),
            inRange ? values.subarray(base, filled) : undefined,
          )
          this.packed.push([packed, base])
          return packed
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

  /** Hands `each` the `count` numbers of the tensor `tensor()` read between `start` and `end`, as JSON.parse's doubles. */
  private doubles(start: number, end: number, count: number, each: (value: number, index: number) => void): void {
    const b = this.bytes
    this.at = start
    for (let i = 0; i < count && this.at < end;) {
      const c = b[this.at]!
      // Between numbers, only brackets, commas and white space: the tensor was read whole.
      if (c === 0x2d || (c >= 0x30 && c <= 0x39)) each(this.number(), i++)
      else this.at++
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
