/**
 * The prediction cache (src/cache/prediction-cache.ts) against the real Cache API of workerd: it backs off
 * after a failing call and comes back (issue 24, finding 10), and its key tells apart versions whose
 * files or labels differ under one number (finding 8).
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { predictionKey, versionDigest } from '../src/cache/prediction-cache'
import { call, isolateOnFakeClock, post, SETOSA } from './support/helpers'

const clock = isolateOnFakeClock()
afterEach(() => vi.restoreAllMocks())

const PATH = '/v1/models/cache-iris/versions/1:predict'

async function scrape() {
  const families = new Map(parsePrometheusTextFormat(await (await call('/metrics')).text()).map((f) => [f.name, f]))
  return (name: string, labels: Record<string, string> = {}) =>
    Number(
      families.get(name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value ??
        0,
    )
}

const outcome = async (flower: number[]) =>
  (await post(PATH, { instances: [flower] })).headers.get('X-Prediction-Cache')

describe('a failing Cache API', () => {
  it('pauses the prediction cache for a doubling while after each failure in a row, then uses it again', async () => {
    const warnings: Record<string, unknown>[] = []
    vi.spyOn(console, 'warn').mockImplementation((line: string) => void warnings.push(JSON.parse(line)))
    // The failure is injected in the one call that fails, on the real cache object: a valid put of a
    // small answer has no way to fail in workerd's local Cache API, and everything else stays real.
    const put = vi.spyOn(caches.default, 'put').mockRejectedValueOnce(new Error('cache unavailable'))
    const flower = [5.0, 3.3, 1.4, 0.21]
    expect(await outcome(flower)).toBe('miss') // answered; its put failed
    expect(warnings.at(-1)).toMatchObject({
      event: 'prediction_cache.backoff',
      operation: 'put',
      error: 'cache unavailable',
      failures: 1,
      retryInMs: 1000,
    })
    let metric = await scrape()
    expect(metric('warmserve_prediction_cache_errors_total', { operation: 'put' })).toBe(1)
    expect(metric('warmserve_prediction_cache_backoff_seconds')).toBe(1)

    // Within the pause the cache is not asked: still a miss, and nothing is stored.
    expect(await outcome(flower)).toBe('miss')
    expect(put).toHaveBeenCalledTimes(1)

    // After it, the cache is used again; a second failure in a row (its lookup) pauses it twice as long.
    clock.advance(1000)
    const match = vi.spyOn(caches.default, 'match').mockRejectedValueOnce(new Error('cache unavailable'))
    expect(await outcome(flower)).toBe('miss')
    expect(warnings.at(-1)).toMatchObject({
      event: 'prediction_cache.backoff',
      operation: 'match',
      failures: 2,
      retryInMs: 2000,
    })
    expect([match, put].map((spy) => spy.mock.calls.length)).toEqual([1, 1])
    clock.advance(2000)
    expect(await outcome(flower)).toBe('miss') // stored this time
    expect(await outcome(flower)).toBe('hit')
    metric = await scrape()
    expect(metric('warmserve_prediction_cache_errors_total', { operation: 'put' })).toBe(1)
    expect(metric('warmserve_prediction_cache_errors_total', { operation: 'match' })).toBe(1)
    expect(metric('warmserve_prediction_cache_backoff_seconds')).toBe(0)
    expect(metric('warmserve_prediction_cache_hits_total', { model: 'cache-iris' })).toBe(1)
  })
})

describe('the key', () => {
  const files = (sha256: string) => [
    { path: 'model.json', bytes: 10, sha256: 'a'.repeat(64) },
    { path: 'group1-shard1of1.bin', bytes: 524, sha256 },
  ]
  const key = async (digest: string) =>
    predictionKey({
      model: 'm',
      version: 2,
      digest,
      config: {},
      format: 'tf-serving-rows',
      outputs: ['y'],
      inputs: { x: { dtype: 'float32', shape: [1], bytes: new Uint8Array(4) } },
    })

  it('differs for other files or other labels under the same version number, and is stable otherwise', async () => {
    const labels = ['cat', 'dog']
    const base = await versionDigest(files('b'.repeat(64)), labels)
    expect(await versionDigest(files('b'.repeat(64)), ['cat', 'dog'])).toBe(base)
    const otherWeights = await versionDigest(files('c'.repeat(64)), labels)
    const otherLabels = await versionDigest(files('b'.repeat(64)), ['cat', 'wolf'])
    const keys = new Set([await key(base), await key(otherWeights), await key(otherLabels)])
    expect(keys.size).toBe(3)
    expect(await key(base)).toBe(await key(await versionDigest(files('b'.repeat(64)), ['cat', 'dog'])))
  })
})
