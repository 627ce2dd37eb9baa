import { afterEach, expect, it, vi } from 'vitest'
import { post } from './helpers'

afterEach(() => vi.restoreAllMocks())

it('logs one JSON line per request with its id, model, version, cache outcome and timings', async () => {
  const lines: Record<string, unknown>[] = []
  vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(JSON.parse(line)))
  const res = await post('/v1/models/iris:predict', { instances: [[5.1, 3.5, 1.4, 0.2]] })
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

it('logs refused requests too, without model fields', async () => {
  const lines: Record<string, unknown>[] = []
  vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(JSON.parse(line)))
  const res = await post('/v1/models/iris:predict', '{')
  expect(res.status).toBe(400)
  const [line] = lines.filter((l) => l.event === 'request')
  expect(line).toMatchObject({ status: 400, requestId: res.headers.get('x-request-id') })
  expect(line).not.toHaveProperty('model')
})
