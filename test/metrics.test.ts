import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import type { PrometheusFamily } from 'parse-prometheus-text-format'
import { beforeEach, describe, expect, it } from 'vitest'
import { tf } from '../src/runtime/tf'
import { call, post, SETOSA } from './support/helpers'
import { resetIsolate } from '../src/isolate'

beforeEach(() => {
  resetIsolate()
})

async function scrape(): Promise<Map<string, PrometheusFamily>> {
  const res = await call('/metrics')
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
  return new Map(parsePrometheusTextFormat(await res.text()).map((f) => [f.name, f]))
}

const value = (families: Map<string, PrometheusFamily>, name: string, labels: Record<string, string> = {}) =>
  Number(families.get(name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value)

describe('GET /metrics', () => {
  it('is Prometheus text a parser accepts, with every family typed', async () => {
    const families = await scrape()
    expect(families.get('warmserve_requests_total')?.type).toBe('COUNTER')
    expect(families.get('warmserve_inference_duration_seconds')?.type).toBe('HISTOGRAM')
    expect(families.get('warmserve_model_load_duration_seconds')?.type).toBe('HISTOGRAM')
    for (const name of ['hits', 'misses', 'joins', 'loads', 'evictions'])
      expect(families.get(`warmserve_cache_${name}_total`)?.type).toBe('COUNTER')
    expect(families.get('warmserve_tfjs_tensors')?.type).toBe('GAUGE')
    expect(families.get('warmserve_tfjs_bytes')?.type).toBe('GAUGE')
  })

  it('counts requests by model, version and status, and the cache outcomes', async () => {
    await post('/v1/models/iris:predict', { instances: [SETOSA] })
    await post('/v1/models/iris:predict', { instances: [SETOSA] })
    await post('/v2/models/iris/infer', {
      inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', data: SETOSA }],
    })
    await post('/v1/models/iris:predict', { instances: [[1, 2, 3]] }) // 400: a client mistake, never reaches a model
    await call('/v1/models/nope') // 404
    const families = await scrape()
    expect(value(families, 'warmserve_requests_total', { model: 'iris', version: '1', status: '200' })).toBe(3)
    expect(value(families, 'warmserve_requests_total', { model: '', status: '400' })).toBe(1)
    expect(value(families, 'warmserve_requests_total', { model: '', status: '404' })).toBe(1)
    expect(value(families, 'warmserve_cache_misses_total')).toBe(1)
    expect(value(families, 'warmserve_cache_loads_total')).toBe(1)
    expect(value(families, 'warmserve_cache_hits_total')).toBeGreaterThanOrEqual(2)
    expect(value(families, 'warmserve_models_loaded')).toBe(1)
    expect(value(families, 'warmserve_model_weight_bytes', { model: 'iris', version: '1', state: 'AVAILABLE' })).toBe(
      524,
    )
  })

  it('has an inference histogram per model and a load histogram per loaded version', async () => {
    await post('/v1/models/iris:predict', { instances: [SETOSA] })
    await post('/v1/models/iris:predict', { instances: [SETOSA] })
    const text = await (await call('/metrics')).text()
    const families = new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]))
    // The parser merges a histogram's series into one bucket map and drops their labels and _count
    // (parse-prometheus-text-format 1.1.1's flattenMetrics), so labels and counts are read from the text.
    expect(families.get('warmserve_inference_duration_seconds')!.metrics[0]!.buckets?.['+Inf']).toBe('2')
    expect(families.get('warmserve_model_load_duration_seconds')!.metrics[0]!.buckets?.['+Inf']).toBe('1')
    expect(text).toContain('warmserve_inference_duration_seconds_count{model="iris",version="1"} 2\n')
    expect(text).toContain('warmserve_inference_duration_seconds_bucket{model="iris",version="1",le="+Inf"} 2\n')
    expect(text).toContain('warmserve_model_load_duration_seconds_count{model="iris",version="1"} 1\n')
    expect(text).toMatch(/^warmserve_model_load_duration_seconds_sum\{model="iris",version="1"\} \d+(\.\d+)?$/m)
  })

  it('reports what tf.js holds', async () => {
    await post('/v1/models/iris:predict', { instances: [SETOSA] })
    const families = await scrape()
    const { numTensors, numBytes } = tf.memory()
    expect(value(families, 'warmserve_tfjs_tensors')).toBe(numTensors)
    expect(value(families, 'warmserve_tfjs_bytes')).toBe(numBytes)
    expect(numTensors).toBeGreaterThan(0)
  })

  it('counts evictions', async () => {
    // Two models and room for one: the second load evicts the first, which is idle.
    const { env } = await import('cloudflare:workers')
    const small = { ...env, MAX_MODELS_LOADED: '1' } as Env
    await post('/v1/models/iris:predict', { instances: [SETOSA] }, {}, small)
    await call('/v2/models/digits/ready', undefined, small)
    expect(value(await scrape(), 'warmserve_cache_evictions_total')).toBe(1)
  })
})
