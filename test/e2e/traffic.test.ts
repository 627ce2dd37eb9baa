/**
 * Traffic control through workerd (the deploy bundle in Miniflare), under concurrent load: a sticky
 * 50/50 split over 200 clients, a burst of image requests against `max_concurrent: 1, max_queue: 0`,
 * and shadow runs that never change an answer, on the shared fixture server (test/e2e/support/fixture-repo.ts; the models:
 * test/e2e/support/repo-traffic.ts). Each wave of requests is bounded in count, and every request in time.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { get, metricSum, post, SETOSA } from './support/http'
import { ROOT, sharedFixtureServer } from './support/servers'
import type { SharedServer } from './support/servers'

let server: SharedServer | undefined
const url = (path: string) => `${server!.url}${path}`

beforeAll(async () => {
  server = await sharedFixtureServer()
})

/** Runs `count` tasks, `width` at a time. */
async function waves<T>(count: number, width: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = []
  for (let start = 0; start < count; start += width) {
    results.push(
      ...(await Promise.all(Array.from({ length: Math.min(width, count - start) }, (_, j) => task(start + j)))),
    )
  }
  return results
}

/** One metric's value summed over the series whose labels include `labels`. */
const metric = (name: string, labels: Record<string, string>) => metricSum(url(''), name, labels)

/** POSTs an image as a raw `image/jpeg` body to `:classify`, bounded in time. */
async function classify(image: Uint8Array) {
  const res = await fetch(url('/v1/models/traffic-digits:classify'), {
    method: 'POST',
    body: image,
    headers: { 'content-type': 'image/jpeg' },
    signal: AbortSignal.timeout(60_000),
  })
  const text = await res.text()
  return { status: res.status, headers: res.headers, json: JSON.parse(text) as unknown }
}

const top = (row: number[]) => row.indexOf(Math.max(...row))

describe('traffic control through workerd', () => {
  it('splits 200 distinct clients 50/50 within 35–65% per version, and one client id always gets one version', async () => {
    const first = await waves(200, 50, async (i) => {
      const res = await post<{ predictions: number[][] }>(
        url('/v1/models/traffic-split:predict'),
        { instances: [SETOSA] },
        { 'x-client-id': `user-${i}` },
      )
      expect(res.status).toBe(200)
      const version = res.headers.get('x-model-version')!
      // Each version answers its own class: the header names the version that really ran.
      expect(top(res.json.predictions[0]!)).toBe(Number(version) - 1)
      return version
    })
    const share = first.filter((v) => v === '1').length / first.length
    expect(share).toBeGreaterThanOrEqual(0.35)
    expect(share).toBeLessThanOrEqual(0.65)
    // Again for 25 of them, concurrently, through the other protocol: every one gets its version.
    const again = await waves(25, 25, async (i) => {
      const res = await post(
        url('/v2/models/traffic-split/infer'),
        { inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', data: SETOSA }] },
        { 'x-client-id': `user-${i * 8}` },
      )
      expect(res.status).toBe(200)
      return res.headers.get('x-model-version')
    })
    expect(again).toEqual(Array.from({ length: 25 }, (_, i) => first[i * 8]))
  })

  it('answers a burst of 24 image requests against max_concurrent 1, max_queue 0 with 200s and 429s only', async () => {
    const image = readFileSync(join(ROOT, 'test/fixtures/models/_images/chelsea-small.jpg'))
    // Loaded first, so the burst measures admission rather than one cold load.
    expect((await classify(image)).status).toBe(200)
    const rejectedBefore = await metric('warmserve_rejections_total', { model: 'traffic-digits', reason: 'model' })
    const answers = await Promise.all(Array.from({ length: 24 }, () => classify(image)))
    const statuses = answers.map((a) => a.status)
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([])
    expect(statuses).toContain(200)
    expect(statuses).toContain(429)
    for (const refused of answers.filter((a) => a.status === 429)) {
      expect(refused.headers.get('retry-after')).toBe('1')
      expect((refused.json as { error: string }).error).toMatch(
        /^model 'traffic-digits' is at capacity: 1 requests in flight and 0 waiting/,
      )
    }
    for (const served of answers.filter((a) => a.status === 200))
      expect((served.json as { label: string }[]).length).toBe(3)
    const rejected = statuses.filter((s) => s === 429).length
    expect(await metric('warmserve_rejections_total', { model: 'traffic-digits', reason: 'model' })).toBe(
      rejectedBefore + rejected,
    )
  })

  it('never changes a response with shadow traffic, and records every comparison', async () => {
    const flowers = [SETOSA, [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    const baseline = await post(url('/v1/models/traffic-baseline:predict'), { instances: flowers })
    expect(baseline.status).toBe(200)
    const count = (name: string, labels: Record<string, string> = {}) =>
      metric(name, { model: 'traffic-shadow', ...labels })
    const before = {
      shadowed: await count('warmserve_shadow_requests_total'),
      compared: await count('warmserve_shadow_requests_total', { outcome: 'compared' }),
      disagreed: await count('warmserve_shadow_disagreements_total'),
    }
    const shadowed = await waves(20, 20, () => post(url('/v1/models/traffic-shadow:predict'), { instances: flowers }))
    for (const res of shadowed) {
      expect(res.status).toBe(200)
      expect(res.headers.get('x-model-version')).toBe('1')
      expect(res.text).toBe(baseline.text)
    }
    // Shadow runs finish after their responses: poll the counters, bounded.
    const deadline = Date.now() + 5_000
    let done = 0
    while ((done = (await count('warmserve_shadow_requests_total')) - before.shadowed) < 20 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(done).toBe(20)
    // Shadow runs go one at a time, at most 32 waiting (src/traffic/traffic.ts): a wave of 20 fits, none is skipped.
    expect((await count('warmserve_shadow_requests_total', { outcome: 'compared' })) - before.compared).toBe(20)
    // v2 answers virginica for every flower: every comparison disagrees.
    expect((await count('warmserve_shadow_disagreements_total')) - before.disagreed).toBe(20)
  })
})
