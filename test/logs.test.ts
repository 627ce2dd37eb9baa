import { env } from 'cloudflare:workers'
import { afterEach, expect, it, vi } from 'vitest'
import { pathOf } from '../src/http/common'
import { call, post } from './support/helpers'

afterEach(() => vi.restoreAllMocks())

/** The Worker with a line for every request; by default (ACCESS_LOG unset) only refused and failed ones get one. */
const logged = { ...env, ACCESS_LOG: 'all' } as Env

/** The access-log lines written while `run` runs. */
async function accessLines(run: () => Promise<unknown>): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = []
  const keep = (line: string) => void lines.push(JSON.parse(line))
  vi.spyOn(console, 'log').mockImplementation(keep)
  vi.spyOn(console, 'error').mockImplementation(keep)
  await run()
  return lines.filter((l) => l.event === 'request')
}

it('logs one JSON line per request with its id, model, version, cache outcome and timings', async () => {
  const lines: Record<string, unknown>[] = []
  vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(JSON.parse(line)))
  const res = await post('/v1/models/iris:predict', { instances: [[5.1, 3.5, 1.4, 0.2]] }, {}, logged)
  const id = res.headers.get('x-request-id')
  expect(id).toMatch(/^[\w-]{8,}$/)
  const request = lines.filter((l) => l.event === 'request')
  expect(request).toEqual([
    expect.objectContaining({
      level: 'info',
      requestId: id,
      method: 'POST',
      path: '/v1/models/iris:predict',
      status: 200,
      model: 'iris',
      version: '1',
      cache: expect.stringMatching(/^(hit|miss|joined)$/),
      timing: expect.stringMatching(/infer;dur=\d+/),
    }),
  ])
})

it("gives every request an id of its own, keeping a client's X-Request-Id apart as clientRequestId", async () => {
  const lines: Record<string, unknown>[] = []
  vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(JSON.parse(line)))
  const sent = { 'x-request-id': 'chosen-by-the-client' }
  const first = await post('/v1/models/iris:predict', { instances: [[5.1, 3.5, 1.4, 0.2]] }, sent, logged)
  const second = await post('/v1/models/iris:predict', { instances: [[5.1, 3.5, 1.4, 0.2]] }, sent, logged)
  const ids = [first, second].map((res) => res.headers.get('x-request-id'))
  ids.forEach((id) => expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/))
  expect(ids[0]).not.toBe(ids[1])
  expect(lines.filter((l) => l.event === 'request').map((l) => [l.requestId, l.clientRequestId])).toEqual([
    [ids[0], 'chosen-by-the-client'],
    [ids[1], 'chosen-by-the-client'],
  ])
})

it("keeps a client's X-Request-Id cut to 128 characters of printable ASCII", async () => {
  const lines: Record<string, unknown>[] = []
  vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(JSON.parse(line)))
  await post('/v1/models/iris:predict', '{', { 'x-request-id': 'a b\u00e9"' })
  await post('/v1/models/iris:predict', '{', { 'x-request-id': 'x'.repeat(1_000) })
  expect(lines.filter((l) => l.event === 'request').map((l) => l.clientRequestId)).toEqual(['a?b?"', 'x'.repeat(128)])
})

it('logs, with ACCESS_LOG unset, only the requests answered 4xx or 5xx; none with ACCESS_LOG=off', async () => {
  const byDefault = await accessLines(async () => {
    await post('/v1/models/iris:predict', { instances: [[5.1, 3.5, 1.4, 0.2]] })
    await call('/v2/health/live')
    await post('/v1/models/iris:predict', '{')
    await call('/v1/models/no-such-model')
  })
  expect(byDefault.map((l) => [l.path, l.status])).toEqual([
    ['/v1/models/iris:predict', 400],
    ['/v1/models/no-such-model', 404],
  ])
  const off = { ...env, ACCESS_LOG: 'off' } as Env
  const none = await accessLines(async () => {
    await post('/v1/models/iris:predict', { instances: [[5.1, 3.5, 1.4, 0.2]] }, {}, off)
    await post('/v1/models/iris:predict', '{', {}, off)
  })
  expect(none).toEqual([])
})

it('answers 500 naming ACCESS_LOG when it is set to a value it does not take', async () => {
  const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
  const res = await call('/v2/health/live', undefined, { ...env, ACCESS_LOG: 'some' } as Env)
  expect(res.status).toBe(500)
  expect(errors).toHaveBeenCalledWith(expect.stringContaining("ACCESS_LOG 'some' is not one of all, errors, off"))
})

it('logs refused requests too, without model fields', async () => {
  const lines: Record<string, unknown>[] = []
  vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(JSON.parse(line)))
  const res = await post('/v1/models/iris:predict', '{')
  expect(res.status).toBe(400)
  const [line] = lines.filter((l) => l.event === 'request')
  expect(line).toMatchObject({ status: 400, requestId: res.headers.get('x-request-id') })
  expect(line).not.toHaveProperty('model')
})

it('logs the path as the URL parser reads it: escapes kept, no query or fragment', () => {
  for (const url of [
    'http://x/v2/health/live',
    'http://x/',
    'http://x?q=1',
    'http://x:8787/v1/models/a%20b:predict?x=/y#z',
    'https://u:p@x.example/a//b/#f?g',
    'http://x/%zz/%C3%A9',
  ]) {
    const serialized = new Request(url).url
    expect(pathOf(serialized)).toBe(new URL(serialized).pathname)
  }
})
