// The Open Inference Protocol's binary tensor data extension: raw little-endian bytes after a
// JSON inference header, for inputs and, when asked, for outputs.
import { describe, expect, it } from 'vitest'
import { call, post } from './support/helpers'

const HEADER = 'Inference-Header-Content-Length'

/** A binary request: the JSON header, then each input's bytes in order. */
function binaryRequest(header: unknown, parts: ArrayBufferView[]) {
  const json = new TextEncoder().encode(JSON.stringify(header))
  const body = new Uint8Array(json.byteLength + parts.reduce((n, p) => n + p.byteLength, 0))
  body.set(json)
  let offset = json.byteLength
  for (const p of parts) {
    body.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), offset)
    offset += p.byteLength
  }
  return { body, headers: { 'content-type': 'application/octet-stream', [HEADER]: String(json.byteLength) } }
}

const send = (path: string, header: unknown, parts: ArrayBufferView[], extra: Record<string, string> = {}) => {
  const { body, headers } = binaryRequest(header, parts)
  return call(path, { method: 'POST', body, headers: { ...headers, ...extra } })
}

/** Splits a binary response into its JSON header and the bytes after it. */
async function readBinary(res: Response) {
  const bytes = new Uint8Array(await res.arrayBuffer())
  const length = Number(res.headers.get(HEADER))
  return { header: JSON.parse(new TextDecoder().decode(bytes.subarray(0, length))), rest: bytes.slice(length) }
}

const features = new Float32Array([1, 2, 3])
const multiplier = new Int32Array([2])
const pairHeader = (extra: Record<string, unknown> = {}) => ({
  inputs: [
    { name: 'features', shape: [1, 3], datatype: 'FP32', parameters: { binary_data_size: 12 } },
    { name: 'multiplier', shape: [1, 1], datatype: 'INT32', parameters: { binary_data_size: 4 } },
  ],
  ...extra,
})

describe('binary tensor data', () => {
  it('is announced by GET /v2', async () => {
    expect((await (await call('/v2')).json<any>()).extensions).toContain('binary_tensor_data')
  })

  it('takes binary inputs and answers what JSON inputs get', async () => {
    const json = await (
      await post('/v2/models/pair/infer', {
        inputs: [
          { name: 'features', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] },
          { name: 'multiplier', shape: [1, 1], datatype: 'INT32', data: [2] },
        ],
      })
    ).json<any>()
    const res = await send('/v2/models/pair/infer', pairHeader(), [features, multiplier])
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect((await res.json<any>()).outputs).toEqual(json.outputs)
  })

  it('mixes binary and JSON inputs', async () => {
    const header = pairHeader()
    header.inputs[1] = { name: 'multiplier', shape: [1, 1], datatype: 'INT32', data: [2] } as any
    const res = await send('/v2/models/pair/infer', header, [features])
    expect(res.status).toBe(200)
    expect((await res.json<any>()).outputs[1].data).toEqual([3])
  })

  it('returns binary outputs when asked, with the model headers', async () => {
    const res = await send('/v2/models/pair/infer', pairHeader({ parameters: { binary_data_output: true } }), [
      features,
      multiplier,
    ])
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/octet-stream')
    expect(res.headers.get('x-model-version')).toBe('1')
    const { header, rest } = await readBinary(res)
    expect(header.outputs).toEqual([
      { name: 'scores', datatype: 'FP32', shape: [1, 2], parameters: { binary_data_size: 8 } },
      { name: 'shifted', datatype: 'INT32', shape: [1, 1], parameters: { binary_data_size: 4 } },
    ])
    expect(Array.from(new Float32Array(rest.buffer, 0, 2))).toEqual([Math.fround(4.7), Math.fround(7.6)])
    expect(Array.from(new Int32Array(rest.buffer, 8, 1))).toEqual([3])
  })

  it('returns only the outputs asked for in binary, the rest as JSON', async () => {
    const res = await post('/v2/models/pair/infer', {
      inputs: [
        { name: 'features', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] },
        { name: 'multiplier', shape: [1, 1], datatype: 'INT32', data: [2] },
      ],
      outputs: [{ name: 'scores', parameters: { binary_data: true } }, { name: 'shifted' }],
    })
    const { header, rest } = await readBinary(res)
    expect(header.outputs[0].parameters).toEqual({ binary_data_size: 8 })
    expect(header.outputs[1].data).toEqual([3])
    expect(rest.byteLength).toBe(8)
  })

  it('converts binary datatypes as it converts JSON ones: INT8 and FP64 and FP16', async () => {
    const header = {
      inputs: [
        { name: 'features', shape: [1, 3], datatype: 'FP16', parameters: { binary_data_size: 6 } },
        { name: 'multiplier', shape: [1, 1], datatype: 'INT8', parameters: { binary_data_size: 1 } },
      ],
    }
    // 1.0, 2.0, 3.0 in half precision
    const res = await send('/v2/models/pair/infer', header, [
      new Uint16Array([0x3c00, 0x4000, 0x4200]),
      new Int8Array([2]),
    ])
    expect(res.status).toBe(200)
    const body = await res.json<any>()
    expect(body.outputs[0].data[0]).toBeCloseTo(4.7, 5)
    expect(body.outputs[1].data).toEqual([3])
  })

  it.each([
    [
      'a length past the body',
      { [HEADER]: '99999' },
      pairHeader(),
      [features, multiplier],
      /Inference-Header-Content-Length is '99999' but the body has/,
    ],
    [
      'a length that is not a number',
      { [HEADER]: 'abc' },
      pairHeader(),
      [features, multiplier],
      /Inference-Header-Content-Length is 'abc'/,
    ],
    ['too few bytes', {}, pairHeader(), [features], /binary_data_size 4 runs past/],
    [
      'bytes left over',
      {},
      pairHeader(),
      [features, multiplier, new Uint8Array(3)],
      /3 bytes after the inference header belong to no input/,
    ],
    [
      'a size that does not match the shape',
      {},
      { inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 12 } }] },
      [features],
      /shape holds 4 elements of 4 bytes \(16\) but binary_data_size is 12/,
    ],
    [
      'NaN in FP32 bytes',
      {},
      { inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] },
      [new Float32Array([1, NaN, 2, 3])],
      /binary data\[1\]: NaN is not a finite number/,
    ],
    [
      'data and bytes both',
      {},
      {
        inputs: [
          {
            name: 'features',
            shape: [1, 4],
            datatype: 'FP32',
            data: [1, 2, 3, 4],
            parameters: { binary_data_size: 16 },
          },
        ],
      },
      [new Float32Array(4)],
      /send data or binary_data_size, not both/,
    ],
    [
      'no rows',
      {},
      { inputs: [{ name: 'features', shape: [0, 4], datatype: 'FP32', parameters: { binary_data_size: 0 } }] },
      [],
      /input 'features' data: shape \[0, 4\] has no rows; a request needs at least one row/,
    ],
    [
      'BYTES datatype',
      {},
      { inputs: [{ name: 'features', shape: [1, 4], datatype: 'BYTES', parameters: { binary_data_size: 4 } }] },
      [new Uint8Array(4)],
      /has no image preprocessing \(inputs\.features\.image in its config\.json\), so it takes float32 numbers, not BYTES/,
    ],
    [
      'a UINT64 too large for the INT32 input',
      {},
      {
        inputs: [
          pairHeader().inputs[0],
          { name: 'multiplier', shape: [1, 1], datatype: 'UINT64', parameters: { binary_data_size: 8 } },
        ],
      },
      [features, new BigUint64Array([2n ** 40n])],
      /input 'multiplier' data\[0\]\[0\]: 1099511627776 does not fit the model's INT32/,
    ],
  ] as [string, Record<string, string>, unknown, ArrayBufferView[], RegExp][])(
    'refuses %s with a 400',
    async (_name, extra, header, parts, message) => {
      const model = (header as any).inputs.length === 1 ? 'iris' : 'pair'
      const res = await send(`/v2/models/${model}/infer`, header, parts, extra)
      expect(res.status).toBe(400)
      expect((await res.json<any>()).error).toMatch(message)
    },
  )
})
