// The JSON tensor reader gives exactly JSON.parse's values, or gives up; the writer writes exactly
// JSON.stringify's text. Property tests over random and edge numbers, shapes and bodies.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { readJson, releaseBody } from '../src/http/body'
import {
  freeBuffer,
  PackedTensor,
  readTensorJson,
  tensorText,
  TF_SERVING_TENSORS,
  unpack,
  V2_TENSORS,
} from '../src/protocols/json-tensors'
import { converter, datatypeOf } from '../src/protocols/datatypes'
import { flatten, makeTensor, toTypedArray } from '../src/protocols/tensors'
import type { RequestLimits } from '../src/protocols/tensors'
import type { TensorSpec } from '../src/runtime/signature'

const RUNS = 200
const encode = (text: string) => new TextEncoder().encode(text)
const budget = () => ({ left: 1e9, limit: 1e9 })

/** Number texts JSON allows, at the edges of double parsing: exponents, long mantissas, subnormals, -0, past 2^53. */
const digits = (min: number, max: number) =>
  fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: min, maxLength: max })
const numberText = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((v) => JSON.stringify(v)),
  fc.integer().map(String),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String),
  fc.float({ noNaN: true, noDefaultInfinity: true }).map((v) => String(v)),
  fc
    .tuple(
      fc.boolean(),
      fc.oneof(
        fc.constant('0'),
        digits(1, 1)
          .filter((d) => d !== '0')
          .chain((d) => digits(0, 25).map((r) => d + r)),
      ),
      fc.option(digits(1, 30)),
      fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), digits(1, 4))),
    )
    .map(
      ([neg, int, frac, exp]) =>
        `${neg ? '-' : ''}${int}${frac === null ? '' : `.${frac}`}${exp === null ? '' : exp.join('')}`,
    ),
  fc.constantFrom(
    '-0',
    '-0.0',
    '0e5',
    '5e-324',
    '4.9e-324',
    '2.4703282292062327e-324',
    '2.2250738585072011e-308',
    '1.7976931348623157e308',
    '1e309',
    '-1e400',
    '9007199254740993',
    '9007199254740992',
    '-9223372036854775809',
    '0.1000000000000000055511151231257827',
    '123456789012345678901234567890',
    '1e-400',
    '0.30000000000000004',
    '3.4028235677973366e38',
  ),
)

describe('the JSON tensor reader', () => {
  it('reads every number as JSON.parse does, to the bit (and to the same Float32)', () => {
    fc.assert(
      fc.property(fc.array(numberText, { minLength: 1, maxLength: 20 }), (texts) => {
        const text = `{"instances":[${texts.join(', ')}]}`
        const read = readTensorJson(encode(text), TF_SERVING_TENSORS, 1e6) as { instances: PackedTensor }
        const parsed = JSON.parse(text) as { instances: number[] }
        expect(read.instances).toBeInstanceOf(PackedTensor)
        expect(read.instances.shape).toEqual([texts.length])
        parsed.instances.forEach((v, i) => expect(Object.is(read.instances.values[i], v)).toBe(true))
        expect(Float32Array.from(read.instances.values)).toEqual(Float32Array.from(parsed.instances))
        // The float32 values read with the body: each Math.fround(parseFloat(text)), or none when one is past float32's range.
        const inRange = parsed.instances.every((v) => Math.abs(v) <= 3.4028234663852886e38)
        if (!inRange) expect(read.instances.float32).toBeUndefined()
        else
          texts.forEach((t, i) => expect(Object.is(read.instances.float32![i], Math.fround(parseFloat(t)))).toBe(true))
      }),
      { numRuns: RUNS },
    )
  })

  it('rounds to the same float32 as Math.fround(parseFloat) where the double sits at a float32 rounding boundary', () => {
    // Halfway between two neighbouring float32s (exact as a double), written with 17 to 25 digits and
    // nudged by a few units in the last: the decimal falls either side of the boundary, or on it.
    const near = fc
      .tuple(
        fc.float({ noNaN: true, noDefaultInfinity: true, min: Math.fround(-3e38), max: Math.fround(3e38) }),
        fc.integer({ min: 17, max: 25 }),
        fc.integer({ min: -3, max: 3 }),
        fc.boolean(),
      )
      .map(([f, digits, nudge, up]) => {
        const next = new Float32Array([f])
        const bits = new Int32Array(next.buffer)
        bits[0]! += up ? 1 : -1
        const middle = (f + next[0]!) / 2
        if (!Number.isFinite(middle)) return String(f)
        const text = middle.toPrecision(Math.min(digits, 100))
        const [mantissa, exponent = ''] = text.split('e')
        const last = Number(mantissa!.at(-1)) + nudge
        return last < 0 || last > 9 ? text : `${mantissa!.slice(0, -1)}${last}${exponent ? `e${exponent}` : ''}`
      })
    fc.assert(
      fc.property(fc.array(near, { minLength: 1, maxLength: 20 }), (texts) => {
        const text = `{"instances":[${texts.join(',')}]}`
        const read = readTensorJson(encode(text), TF_SERVING_TENSORS, 1e6) as { instances: PackedTensor }
        expect(read.instances.float32).toBeDefined()
        texts.forEach((t, i) => expect(Object.is(read.instances.float32![i], Math.fround(parseFloat(t)))).toBe(true))
      }),
      { numRuns: RUNS },
    )
  })

  it("reads float32s printed as doubles (JSON.stringify of a Float32Array's values) to those float32s", () => {
    fc.assert(
      fc.property(fc.float32Array({ noNaN: true, noDefaultInfinity: true, minLength: 1, maxLength: 64 }), (floats) => {
        const text = JSON.stringify({ instances: Array.from(floats) })
        const read = readTensorJson(encode(text), TF_SERVING_TENSORS, 1e6) as { instances: PackedTensor }
        // -0 is written as 0 by JSON.stringify.
        expect(read.instances.float32).toEqual(floats.map((v) => (Object.is(v, -0) ? 0 : v)))
      }),
      { numRuns: RUNS },
    )
  })

  it('packs rectangular nested arrays into the shape and row-major values flatten gives', () => {
    const shaped = fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 4 }).chain((shape) =>
      fc
        .array(fc.double({ noNaN: true, noDefaultInfinity: true }), {
          minLength: shape.reduce((a, b) => a * b, 1),
          maxLength: shape.reduce((a, b) => a * b, 1),
        })
        .map((values) => ({ shape, values })),
    )
    fc.assert(
      fc.property(shaped, fc.constantFrom('', ' ', '\n\t'), ({ shape, values }, ws) => {
        const packed = new PackedTensor(shape, Float64Array.from(values))
        const nested = unpack(packed)
        const text = `${ws}{${ws}"inputs"${ws}:${ws}[{"name":"x","shape":${JSON.stringify(shape)},"data":${JSON.stringify(nested, null, ws.length > 0 ? 1 : 0)}}]${ws}}${ws}`
        const read = readTensorJson(encode(text), V2_TENSORS, 1e6) as {
          inputs: { shape: number[]; data: PackedTensor }[]
        }
        const flat = flatten((JSON.parse(text) as { inputs: { data: unknown }[] }).inputs[0]!.data, 'x', budget())
        expect(read.inputs[0]!.shape).toEqual(shape) // a shape is a list, never a tensor
        expect(read.inputs[0]!.data.shape).toEqual(flat.shape)
        expect(Array.from(read.inputs[0]!.data.values)).toEqual(Array.from(flat.values as number[]))
        expect(unpack(read.inputs[0]!.data)).toEqual(JSON.parse(text).inputs[0].data)
      }),
      { numRuns: RUNS },
    )
  })

  it('gives up on, or reads exactly as JSON.parse, any body: ragged, mixed, malformed, escaped', () => {
    const leaf = fc.oneof(fc.double(), fc.integer(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 4 }))
    const tensorish = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 4 })),
    })).v
    const body = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
      fc.record({ instances: tensorish, signature_name: fc.string() }).map((v) => JSON.stringify(v)),
      fc
        .record({ inputs: fc.dictionary(fc.string({ maxLength: 6 }), tensorish, { maxKeys: 3 }) })
        .map((v) => JSON.stringify(v)),
      // Cut short or with a byte changed: mostly malformed.
      fc
        .tuple(
          fc.record({ instances: tensorish }),
          fc.nat(),
          fc.constantFrom(',', ']', '[', '"', '}', '-', '.', 'e', '0', '\\', ' '),
        )
        .map(([v, at, c]) => {
          const text = JSON.stringify(v)
          const i = at % (text.length + 1)
          return at % 2 === 0 ? text.slice(0, i) : text.slice(0, i) + c + text.slice(i + 1)
        }),
    )
    fc.assert(
      fc.property(body, (text) => {
        let expected: unknown
        try {
          expected = JSON.parse(text)
        } catch {
          expect(readTensorJson(encode(text), TF_SERVING_TENSORS, 1e6)).toBeUndefined()
          return
        }
        const read = readTensorJson(encode(text), TF_SERVING_TENSORS, 1e6)
        if (read === undefined) return
        const plain = (v: unknown): unknown =>
          v instanceof PackedTensor
            ? unpack(v)
            : Array.isArray(v)
              ? v.map(plain)
              : v && typeof v === 'object'
                ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]))
                : v
        expect(plain(read)).toStrictEqual(expected)
      }),
      { numRuns: RUNS * 2 },
    )
  })

  it('leaves to the general path what it does not pack: ragged, non-numeric, empty, too many, __proto__, a byte order mark', () => {
    const tensorOf = (text: string, max = 1e6) =>
      readTensorJson(encode(text), TF_SERVING_TENSORS, max) as { instances?: unknown; inputs?: unknown } | undefined
    expect(tensorOf('{"instances":[[1,2],[3]]}')?.instances).toEqual([[1, 2], [3]])
    expect(tensorOf('{"instances":[[1,2],3]}')?.instances).toEqual([[1, 2], 3])
    expect(tensorOf('{"instances":[1,[2]]}')?.instances).toEqual([1, [2]])
    expect(tensorOf('{"instances":[1,"2"]}')?.instances).toEqual([1, '2'])
    expect(tensorOf('{"instances":[]}')?.instances).toEqual([])
    expect(tensorOf('{"instances":[[]]}')?.instances).toEqual([[]])
    expect(tensorOf('{"inputs":[[1,2],[3]]}')?.inputs).toEqual([[1, 2], [3]]) // and no tensor packed inside it
    expect(tensorOf('{"instances":[1,2,3]}', 2)?.instances).toEqual([1, 2, 3])
    expect(tensorOf('{"instances":[1,2]}', 2)?.instances).toBeInstanceOf(PackedTensor)
    expect(tensorOf('{"__proto__":{"x":1},"instances":[1]}')).toBeUndefined()
    expect(tensorOf('{"instances":[01]}')).toBeUndefined()
    expect(tensorOf('{"instances":[1.]}')).toBeUndefined()
    expect(tensorOf('{"instances":[.5]}')).toBeUndefined()
    expect(tensorOf('{"instances":[+1]}')).toBeUndefined()
    expect(tensorOf('{"instances":[1,]}')).toBeUndefined()
    expect(tensorOf('{"instances":[NaN]}')).toBeUndefined()
    expect(tensorOf('')).toBeUndefined()
    expect((tensorOf('\ufeff{"instances":[2]}')?.instances as PackedTensor).values).toEqual(new Float64Array([2]))
    expect(tensorOf('{"signature_name":"caf\\u00e9 ☕","instances":[1]}')).toMatchObject({ signature_name: 'café ☕' })
  })
})

describe('packed tensors into an input', () => {
  const where = "input 'x'"
  const spec = (dtype: 'float32' | 'int32'): TensorSpec => ({ name: 'x', tensorName: 'x:0', dtype, shape: [-1] })
  /** The typed array (its bytes, so -0 and 0 differ) or the 400's message, from the packed reader or from JSON.parse. */
  const typed = (texts: string[], dtype: 'float32' | 'int32', packed: boolean) => {
    const text = `{"instances":[${texts.join(',')}]}`
    const body = (packed ? readTensorJson(encode(text), TF_SERVING_TENSORS, 1e6) : JSON.parse(text)) as {
      instances: unknown
    }
    if (packed) expect(body.instances).toBeInstanceOf(PackedTensor)
    try {
      const flat = flatten(body.instances, where, budget())
      const out = toTypedArray(spec(dtype), flat, where, converter(datatypeOf(dtype), dtype, where))
      return Array.from(new Uint8Array(out.buffer, out.byteOffset, out.byteLength))
    } catch (error) {
      return (error as Error).message
    }
  }
  const TRICKY = [
    '1e-45',
    '1.4e-45',
    '7e-46',
    '3.4028235e38',
    '3.4028234663852886e38',
    '3.4028235677973366e38',
    '3.5e38',
    '-0',
    '-0.0',
    '0',
    '16777217',
    '16777216',
    '-16777217',
    '2147483647',
    '2147483648',
    '-2147483648',
    '-2147483649',
    '0.1',
    '1.5',
    '-2.5e0',
    '1E3',
    '25e-1',
    '1e+2',
    '5e-324',
    '9007199254740993',
    '0.30000000000000004',
    '1e400',
  ]

  it('gives the float32 and int32 arrays of the general path (JSON.parse, then the converter) bit for bit, and the same refusals at the same index', () => {
    for (const dtype of ['float32', 'int32'] as const) {
      for (const t of TRICKY)
        expect(typed(['1', t, '2'], dtype, true), `${dtype} ${t}`).toEqual(typed(['1', t, '2'], dtype, false))
      expect(typed(TRICKY, dtype, true)).toEqual(typed(TRICKY, dtype, false))
    }
    expect(typed(['1', '1.5', '2'], 'int32', true)).toMatch(/^input 'x'\[1\]: .*1\.5/)
    expect(typed(['0', '3.5e38'], 'float32', true)).toMatch(/^input 'x'\[1\]: 3\.5e\+38 is out of/)
    fc.assert(
      fc.property(
        fc.array(numberText, { minLength: 1, maxLength: 20 }),
        fc.constantFrom('float32', 'int32'),
        (texts, dtype) => {
          expect(typed(texts, dtype, true)).toEqual(typed(texts, dtype, false))
        },
      ),
      { numRuns: RUNS },
    )
  })

  it("writes an int32 or a range-checked input over its own float32 numbers: no second array of the input's size", () => {
    const text = '{"instances":[[1,2,3],[4,5,6]],"other":[7.5]}'
    const body = readTensorJson(encode(text), TF_SERVING_TENSORS, 1e6) as { instances: PackedTensor }
    const numbers = body.instances.float32!
    const flat = flatten(body.instances, where, budget())
    const int32 = toTypedArray(spec('int32'), flat, where, converter('INT32', 'int32', where))
    expect(int32).toBeInstanceOf(Int32Array)
    expect(Array.from(int32)).toEqual([1, 2, 3, 4, 5, 6])
    // The same bytes as the numbers' (request-memory.ts counts a JSON body 3 ×, the body and its numbers).
    expect([int32.buffer, int32.byteOffset, int32.length]).toEqual([numbers.buffer, numbers.byteOffset, numbers.length])
    // Taken for good: the same body made into a float32 input again (a shadow version's) reads the doubles.
    expect(body.instances.float32).toBeUndefined()
    const again = toTypedArray(spec('float32'), flat, where, converter('FP32', 'float32', where))
    expect(Array.from(again)).toEqual([1, 2, 3, 4, 5, 6])
    const checked = readTensorJson(encode(text), TF_SERVING_TENSORS, 1e6) as { instances: PackedTensor }
    const within = (v: number) => Math.min(v, 5)
    const float32 = toTypedArray(
      spec('float32'),
      flatten(checked.instances, where, budget()),
      where,
      Object.assign(within, { floatLimit: 5 }) as never,
    )
    expect(float32.buffer).toBe(checked.instances.float32!.buffer)
    expect(Array.from(float32)).toEqual([1, 2, 3, 4, 5, 5])
  })

  it('checks input_limits on the doubles, as the general path does', async () => {
    const limits: RequestLimits = {
      maxBatch: 64,
      batchRule: 'MAX_BATCH_SIZE',
      elements: budget(),
      ranges: { x: { min: 0, max: 0.3 } },
      imagePixels: { left: 1, limit: 1 },
    }
    const made = async (text: string, packed: boolean) => {
      const body = (packed ? readTensorJson(encode(text), TF_SERVING_TENSORS, 1e6) : JSON.parse(text)) as {
        instances: unknown
      }
      try {
        const flat = flatten(body.instances, where, budget())
        const x = await makeTensor(spec('float32'), flat, where, converter('FP32', 'float32', where), limits, 'm')
        const data = Array.from(await x.data())
        x.dispose()
        return data
      } catch (error) {
        return (error as Error).message
      }
    }
    for (const text of [
      '{"instances":[0.1,0.3,0]}',
      '{"instances":[0.1,0.30000000000000004]}',
      '{"instances":[-0,1e-45]}',
    ]) {
      expect(await made(text, true), text).toEqual(await made(text, false))
    }
    expect(await made('{"instances":[0.1,0.30000000000000004]}', true)).toMatch(
      /\[1\]: 0.30000000000000004 is above the maximum 0.3/,
    )
  })

  it('keeps the float32 values of every tensor of a body in one buffer, each a view of its own, of their size when they filled little of the first', () => {
    const text = `{"inputs":{"a":[[1,2],[3,4]],"b":[5,6,7],"c":[0.5]}}`
    const read = readTensorJson(encode(text), TF_SERVING_TENSORS, 1e6) as { inputs: Record<string, PackedTensor> }
    const { a, b, c } = read.inputs
    expect([...a!.float32!, ...b!.float32!, ...c!.float32!]).toEqual([1, 2, 3, 4, 5, 6, 7, 0.5])
    expect(a!.float32!.buffer).toBe(b!.float32!.buffer)
    expect(b!.float32!.buffer).toBe(c!.float32!.buffer)
    // Made for one more number than the commas after the first tensor's start: exactly its 8 numbers.
    expect(a!.float32!.buffer.byteLength).toBe(8 * 4)
    // Long numbers too: the buffer is the numbers', not half the body's bytes (the largest JSON body's
    // 6.6 MB of numbers took a 15.5 MB buffer first, then a copy of their size).
    const long = `{"instances":[${Array.from({ length: 1000 }, (_, i) => (i / 7).toFixed(12)).join(',')}]}`
    const numbers = (readTensorJson(encode(long), TF_SERVING_TENSORS, 1e6) as { instances: PackedTensor }).instances
    expect(numbers.float32!.length).toBe(1000)
    expect(numbers.float32!.buffer.byteLength).toBe(1000 * 4)
    // Commas in strings after the tensors only make the buffer larger, never too small; past half of it
    // unused, the numbers move to a buffer of their size.
    const commas = `{"instances":[1,2],"signature_name":"${','.repeat(100)}"}`
    const few = (readTensorJson(encode(commas), TF_SERVING_TENSORS, 1e6) as { instances: PackedTensor }).instances
    expect([...few.float32!]).toEqual([1, 2])
    expect(few.float32!.buffer.byteLength).toBe(2 * 4)
    // The elements limit bounds it as before: one number past it, the tensor is left unpacked.
    const dense = `{"instances":[${Array(1000).fill(0).join(',')}]}`
    const over = readTensorJson(encode(dense), TF_SERVING_TENSORS, 999) as { instances: unknown }
    expect(over.instances instanceof PackedTensor).toBe(false)
    const zeros = (readTensorJson(encode(dense), TF_SERVING_TENSORS, 1000) as { instances: PackedTensor }).instances
    expect(zeros.float32!.buffer.byteLength).toBe(1000 * 4)
  })
})

describe("a request body's buffers", () => {
  it('are freed at once by releaseBody, bytes and packed numbers, and only those of that request', async () => {
    const request = (text: string) =>
      new Request('http://warmserve.test/', {
        method: 'POST',
        body: text,
        headers: { 'content-type': 'application/json', 'content-length': String(encode(text).length) },
      })
    const text = `{"instances":[${Array.from({ length: 1000 }, (_, i) => (i / 7).toFixed(9)).join(',')}]}`
    const [one, other] = [request(text), request(text)]
    const read = (r: Request) =>
      readJson(r, 1 << 20, (bytes) => readTensorJson(bytes, TF_SERVING_TENSORS, 1e6)) as Promise<{
        instances: PackedTensor
      }>
    const [a, b] = [await read(one), await read(other)]
    const numbers = a.instances.float32!
    expect(numbers.length).toBe(1000)
    releaseBody(one)
    // Detached: its memory is the allocator's again now, not at V8's next collection.
    expect((numbers.buffer as ArrayBuffer).detached).toBe(true)
    expect(a.instances.float32!.length).toBe(0)
    // The other request's are untouched.
    expect((b.instances.float32!.buffer as ArrayBuffer).detached).toBe(false)
    expect([...b.instances.float32!]).toEqual([...JSON.parse(text).instances.map(Math.fround)])
    // A body read the general way (not packable) has its bytes freed too; releasing twice is harmless.
    const general = request('{"instances":[[1,2],[3]]}')
    expect(await readJson(general, 1 << 20, (bytes) => readTensorJson(bytes, TF_SERVING_TENSORS, 1e6))).toEqual({
      instances: [[1, 2], [3]],
    })
    releaseBody(general)
    releaseBody(general)
    releaseBody(other)
    expect((b.instances.float32!.buffer as ArrayBuffer).detached).toBe(true)
  })

  it('buffers that cannot be detached are left to the collector', () => {
    const memory = new WebAssembly.Memory({ initial: 1 })
    freeBuffer(memory.buffer)
    expect(memory.buffer.byteLength).toBe(65536)
    freeBuffer(undefined)
  })
})

describe('the JSON tensor writer', () => {
  const shapes = fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 0, maxLength: 4 })
  const nest = (values: unknown[], shape: number[]): unknown => {
    if (shape.length === 0) return values[0]
    let at = 0
    const build = (d: number): unknown[] =>
      d === shape.length - 1
        ? values.slice(at, (at += shape[d]!))
        : Array.from({ length: shape[d]! }, () => build(d + 1))
    return build(0)
  }
  const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1)

  it('writes float32, int32 and bool tensors byte for byte as JSON.stringify writes their nested values', () => {
    const float = fc.float().map(Math.fround)
    fc.assert(
      fc.property(
        shapes.chain((shape) =>
          fc.tuple(
            fc.constant(shape),
            fc.oneof(
              fc
                .array(float, { minLength: size(shape), maxLength: size(shape) })
                .map((v) => ({ data: Float32Array.from(v) as Float32Array | Int32Array | Uint8Array, bool: false })),
              fc
                .array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), {
                  minLength: size(shape),
                  maxLength: size(shape),
                })
                .map((v) => ({ data: Int32Array.from(v), bool: false })),
              fc
                .array(fc.integer({ min: 0, max: 1 }), { minLength: size(shape), maxLength: size(shape) })
                .map((v) => ({ data: Uint8Array.from(v), bool: true })),
            ),
          ),
        ),
        ([shape, { data, bool }]) => {
          const values = Array.from(data as ArrayLike<number>, (v) => (bool ? v === 1 : v))
          expect(tensorText(data, shape, bool)).toBe(JSON.stringify(nest(values, shape)))
        },
      ),
      { numRuns: RUNS },
    )
  })

  it('writes NaN and the infinities as null and -0 as 0, as JSON.stringify does', () => {
    const data = new Float32Array([NaN, Infinity, -Infinity, -0, 1e-45, 3.4028234663852886e38, 0.1])
    expect(tensorText(data, [7], false)).toBe(JSON.stringify(Array.from(data)))
    expect(tensorText(data, [], false, 3)).toBe('0')
    expect(tensorText(data, [2, 3], false, 1)).toBe(
      JSON.stringify([Array.from(data.subarray(1, 4)), Array.from(data.subarray(4, 7))]),
    )
  })
})
