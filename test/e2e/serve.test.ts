/**
 * End to end, the bundled models: `wrangler dev` serving model-assets/ as `npm run dev` does (the
 * shared one, test/e2e/support/servers.ts), spoken to over real HTTP the way the README's curl examples do.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { argmax, bearer, CURL_D_HEADERS, get, post, sum } from './support/http'
import { ROOT, SHARED_ADMIN_TOKEN, sharedDevServer } from './support/servers'

interface DigitsHoldout {
  labels: number[]
  images: number[][]
  accuracy: number
}

const BATCH = 64

let server: { url: string } | undefined
const url = (path: string) => `${server!.url}${path}`

beforeAll(async () => {
  server = await sharedDevServer()
})

describe('the README acceptance: curl -d to iris', () => {
  const body = '{"instances":[[5.1,3.5,1.4,0.2]]}'

  it('classifies a setosa, loading the model on the first request and reusing it on the second', async () => {
    // The server is shared: whatever another file loaded, iris is not loaded now.
    const unload = await post(url('/admin/models/iris/unload'), {}, bearer(SHARED_ADMIN_TOKEN))
    expect(unload.status, unload.text).toBe(200)
    const first = await post<{ predictions: number[][] }>(url('/v1/models/iris:predict'), body, CURL_D_HEADERS)
    expect(first.status, first.text).toBe(200)
    expect(first.json.predictions).toHaveLength(1)
    const probabilities = first.json.predictions[0]!
    expect(probabilities).toHaveLength(3)
    expect(argmax(probabilities)).toBe(0)
    expect(sum(probabilities)).toBeCloseTo(1, 4)
    expect(['miss', 'joined']).toContain(first.headers.get('x-model-cache'))
    expect(first.headers.get('x-model-version')).toBe('1')
    expect(first.headers.get('server-timing')).toMatch(/\bload;dur=\d+/)
    expect(first.headers.get('server-timing')).toMatch(/\binfer;dur=\d+/)

    const second = await post<{ predictions: number[][] }>(url('/v1/models/iris:predict'), body, CURL_D_HEADERS)
    expect(second.status, second.text).toBe(200)
    expect(second.headers.get('x-model-cache')).toBe('hit')
    expect(second.headers.get('x-model-version')).toBe('1')
    expect(second.headers.get('server-timing')).toMatch(/\binfer;dur=\d+/)
    expect(second.headers.get('server-timing')).not.toMatch(/\bload;/)
    expect(second.json.predictions).toEqual(first.json.predictions)
  })
})

describe('status and metadata', () => {
  it('GET /v1/models/iris reports version 1 AVAILABLE', async () => {
    const res = await get(url('/v1/models/iris'))
    expect(res.status, res.text).toBe(200)
    expect(res.json).toEqual({
      model_version_status: [{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }],
    })
  })

  it('GET /v1/models/{iris,digits}/metadata has TF Serving shape (numbers; an image input as DT_STRING)', async () => {
    interface TensorInfo {
      dtype: string
      tensor_shape: { dim: { size: string }[]; unknown_rank: boolean }
      name: string
    }
    const res = await get<{
      model_spec: { name: string; signature_name: string; version: string }
      metadata: {
        signature_def: {
          signature_def: Record<
            string,
            { inputs: Record<string, TensorInfo>; outputs: Record<string, TensorInfo>; method_name: string }
          >
        }
      }
    }>(url('/v1/models/iris/metadata'))
    expect(res.status, res.text).toBe(200)
    expect(res.json.model_spec).toEqual({ name: 'iris', signature_name: '', version: '1' })
    const def = res.json.metadata.signature_def.signature_def.serving_default
    expect(def, res.text).toBeDefined()
    expect(def!.method_name).toBe('tensorflow/serving/predict')
    const inputs = Object.values(def!.inputs)
    expect(inputs).toHaveLength(1)
    expect(inputs[0]!.dtype).toBe('DT_FLOAT')
    expect(inputs[0]!.tensor_shape.dim.map((d) => d.size)).toEqual(['-1', '4'])
    expect(inputs[0]!.tensor_shape.unknown_rank).toBe(false)
    const outputs = Object.values(def!.outputs)
    expect(outputs).toHaveLength(1)
    expect(outputs[0]!.dtype).toBe('DT_FLOAT')
    expect(outputs[0]!.tensor_shape.dim.map((d) => d.size)).toEqual(['-1', '3'])

    // digits takes images (its config.json): encoded images, one string per row, TF Serving's DT_STRING.
    const digits = await get<typeof res.json>(url('/v1/models/digits/metadata'))
    const image = Object.values(digits.json.metadata.signature_def.signature_def.serving_default!.inputs)[0]!
    expect(image.dtype).toBe('DT_STRING')
    expect(image.tensor_shape.dim.map((d) => d.size)).toEqual(['-1'])
    const scores = Object.values(digits.json.metadata.signature_def.signature_def.serving_default!.outputs)[0]!
    expect(scores.tensor_shape.dim.map((d) => d.size)).toEqual(['-1', '10'])
  })
})

describe('digits on the held-out sample', () => {
  const holdout = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/digits-holdout.json'), 'utf8')) as DigitsHoldout

  /** A flat 784-value image as a [28, 28, 1] instance. */
  const toInstance = (flat: readonly number[]) =>
    Array.from({ length: 28 }, (_, y) => Array.from({ length: 28 }, (_, x) => [flat[y * 28 + x]!]))

  const batches: number[][][][][] = []
  for (let i = 0; i < holdout.images.length; i += BATCH)
    batches.push(holdout.images.slice(i, i + BATCH).map(toInstance))

  it('classifies every held-out image with the accuracy training recorded', async () => {
    expect(holdout.images.length).toBeGreaterThanOrEqual(100)
    expect(holdout.labels).toHaveLength(holdout.images.length)
    for (const image of holdout.images) expect(image).toHaveLength(784)

    const predicted: number[] = []
    for (const [b, instances] of batches.entries()) {
      const res = await post<{ predictions: number[][] }>(url('/v1/models/digits:predict'), { instances })
      expect(res.status, `batch ${b}: ${res.text.slice(0, 500)}`).toBe(200)
      expect(res.json.predictions).toHaveLength(instances.length)
      for (const row of res.json.predictions) {
        expect(row).toHaveLength(10)
        expect(sum(row)).toBeCloseTo(1, 4)
        predicted.push(argmax(row))
      }
    }
    const n = holdout.labels.length
    const correct = predicted.filter((p, i) => p === holdout.labels[i]).length
    const accuracy = correct / n
    // Same model, same inputs: the same answers as training's own evaluation, within one image.
    expect(
      Math.abs(correct - Math.round(holdout.accuracy * n)),
      `served accuracy ${accuracy}, recorded ${holdout.accuracy}`,
    ).toBeLessThanOrEqual(1)
    expect(accuracy).toBeGreaterThanOrEqual(0.97)
  })

  it('answers the columnar format with the same values as the row format', async () => {
    const batch = batches[0]!
    const rows = await post<{ predictions: number[][] }>(url('/v1/models/digits:predict'), { instances: batch })
    const columns = await post<{ outputs: number[][] }>(url('/v1/models/digits:predict'), { inputs: batch })
    expect(rows.status, rows.text.slice(0, 500)).toBe(200)
    expect(columns.status, columns.text.slice(0, 500)).toBe(200)
    expect(columns.json).not.toHaveProperty('predictions')
    expect(columns.json.outputs).toHaveLength(batch.length)
    expect(columns.json.outputs).toEqual(rows.json.predictions)
  })
})

describe('errors over real HTTP', () => {
  it('an unknown model is 404 with an error message', async () => {
    const res = await post<{ error: string }>(url('/v1/models/no-such-model:predict'), { instances: [[1, 2, 3, 4]] })
    expect(res.status, res.text).toBe(404)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(res.json).toEqual({ error: expect.stringMatching(/no-such-model/) })
  })

  it('malformed JSON is 400 with an error message', async () => {
    const res = await post<{ error: string }>(
      url('/v1/models/iris:predict'),
      '{"instances": [[5.1, 3.5,',
      CURL_D_HEADERS,
    )
    expect(res.status, res.text).toBe(400)
    expect(res.json).toEqual({ error: expect.stringMatching(/JSON/) })
  })
})
