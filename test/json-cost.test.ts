/**
 * JSON read value by value (a tensor the packed reader cannot pack, a body it gives up on) costs far more
 * than its bytes (src/protocols/json-cost.ts): past JSON_GENERAL_MAX_HEAP_BYTES it is refused with a 413
 * before anything is built, where before an 8 MB body took workerd's heap to 196 MB (docs/memory.md).
 * The same numbers as a rectangular array are read packed, 8 bytes each.
 */
import { describe, expect, it } from 'vitest'
import {
  JSON_CONTAINER_HEAP_BYTES,
  JSON_GENERAL_MAX_HEAP_BYTES,
  JSON_VALUE_HEAP_BYTES,
  jsonHeapCost,
} from '../src/protocols/json-cost'
import { post } from './support/helpers'

const bytes = (text: string) => new TextEncoder().encode(text)
const C = JSON_CONTAINER_HEAP_BYTES
const V = JSON_VALUE_HEAP_BYTES

describe('the cost of reading JSON value by value, counted first', () => {
  it('counts arrays, objects and values outside strings, escapes included', () => {
    expect(jsonHeapCost(bytes('1'))).toBe(V)
    expect(jsonHeapCost(bytes('[1,2,[3,4]]'))).toBe(2 * C + 4 * V)
    expect(jsonHeapCost(bytes('{"a":[1,2],"b":"x,[{\\"y,"}'))).toBe(2 * C + 3 * V)
    // From an offset: that value only; undefined past a depth.
    expect(jsonHeapCost(bytes('{"a":[1,[2,3]],"b":[4,5,6,7]}'), 5)).toBe(2 * C + 3 * V)
    expect(jsonHeapCost(bytes('{"a":[[[[1]]]]}'), 5, 3)).toBeUndefined()
  })

  it('refuses rows that would take more than JSON_GENERAL_MAX_HEAP_BYTES read one by one, unless they pack', async () => {
    const rows = Math.ceil(JSON_GENERAL_MAX_HEAP_BYTES / (C + 4 * V)) + 1
    const row = '[5.1,3.5,1.4,0.2]'
    // Rows of iris's four features, the last with a string: not packable, so read as plain arrays.
    const broken = `{"instances":[${Array(rows - 1)
      .fill(row)
      .join(',')},[5.1,3.5,1.4,"x"]]}`
    const refused = await post('/v1/models/iris:predict', broken)
    const error = (await refused.json<{ error: string }>()).error
    expect(refused.status, error).toBe(413)
    expect(error).toContain(`'instances' would take ~${(rows + 1) * C + 4 * rows * V} bytes`)
    expect(error).toContain(`${JSON_GENERAL_MAX_HEAP_BYTES} one request may take`)
    // The same rows all numbers are packed: refused for their number of rows, not for this.
    const packed = await post('/v1/models/iris:predict', `{"instances":[${Array(rows).fill(row).join(',')}]}`)
    const packedError = (await packed.json<{ error: string }>()).error
    expect(packedError).toContain('MAX_BATCH_SIZE')
    // And a small body that does not pack is still read, and its fault named.
    const small = await post('/v1/models/iris:predict', { instances: [[5.1, 3.5, 1.4, 'x']] })
    expect(small.status).toBe(400)
    expect((await small.json<{ error: string }>()).error).not.toContain('would take')
  })
})
