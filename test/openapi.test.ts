import { Validator } from '@cfworker/json-schema'
import { describe, expect, it } from 'vitest'
import { app } from '../src/http/app'
import { documentedPath } from '../src/http/openapi'
import { call, SETOSA } from './support/helpers'

type Doc = {
  openapi: string
  paths: Record<string, Record<string, { responses: Record<string, unknown>; requestBody?: any }>>
}

const documentOf = async () => (await call('/openapi.json')).json<Doc>()

// Routes the document leaves out, and why:
// - middleware (`app.use`, method ALL, path /*): not endpoints;
// - the `ALL` 405 fallbacks: they answer every other method of a documented path, listed as 405 there;
// - /ui/*: the files of the try-it and docs pages (scripts, styles, Swagger UI), not an API.
const internal = (r: { method: string; path: string }) => r.method === 'ALL' || r.path === '/ui/*'

describe('GET /openapi.json', () => {
  it('is OpenAPI 3.1', async () => {
    const res = await call('/openapi.json')
    expect(res.status).toBe(200)
    expect((await res.json<Doc>()).openapi).toMatch(/^3\.1\./)
  })

  it('lists every route of the app', async () => {
    const { paths } = await documentOf()
    const routes = app.routes.filter((r) => !internal(r))
    expect(routes.length).toBeGreaterThan(25)
    const missing = routes.filter((r) => !paths[documentedPath(r.method, r.path)]?.[r.method.toLowerCase()])
    expect(missing.map((r) => `${r.method} ${r.path}`)).toEqual([])
  })

  it('lists nothing the app does not serve', async () => {
    const { paths } = await documentOf()
    const served = new Set(
      app.routes
        .filter((r) => !internal(r))
        .map((r) => `${r.method.toLowerCase()} ${documentedPath(r.method, r.path)}`),
    )
    const documented = Object.entries(paths).flatMap(([path, item]) =>
      Object.keys(item).map((method) => `${method} ${path}`),
    )
    expect(documented.filter((op) => !served.has(op))).toEqual([])
  })

  it('shows TF Serving predict at the paths clients call, with the body the route validates', async () => {
    const { paths } = await documentOf()
    for (const path of [
      '/v1/models/{name}:predict',
      '/v1/models/{name}/versions/{version}:predict',
      '/v1/models/{name}/labels/{label}:predict',
    ]) {
      const op = paths[path]!.post!
      expect(Object.keys(op.responses).sort()).toEqual(['200', '400', '404', '405', '413', '415', '429', '503'])
      const schema = op.requestBody.content['application/json'].schema
      expect(Object.keys(schema.properties).sort()).toEqual(['inputs', 'instances', 'signature_name'])
    }
    expect(paths['/v1/models/{target}']).toBeUndefined()
  })

  it('gives the v2 infer body from the zod schema, datatypes included', async () => {
    const { paths } = await documentOf()
    const schema = paths['/v2/models/{name}/infer']!.post!.requestBody.content['application/json'].schema
    expect(schema.required).toEqual(['inputs'])
    expect(JSON.stringify(schema)).toContain('"FP32"')
  })

  it('documents the error responses as {"error": string}', async () => {
    const doc = (await documentOf()) as Doc & { components: { responses: Record<string, any> } }
    const notFound = doc.components.responses.NotFound.content['application/json'].schema
    expect(notFound).toMatchObject({ type: 'object', properties: { error: { type: 'string' } }, required: ['error'] })
    expect(Object.keys(doc.paths['/v2/models/{name}']!.get!.responses).sort()).toEqual(['200', '400', '404', '503'])
  })
})

describe('the documented response schemas', () => {
  type Json = Record<string, any>
  /** Inlines the document's local `$ref`s, so a schema stands alone. */
  const inline = (doc: Json, value: any, seen = new Set<string>()): any => {
    if (Array.isArray(value)) return value.map((v) => inline(doc, v, seen))
    if (value === null || typeof value !== 'object') return value
    if (typeof value.$ref === 'string' && value.$ref.startsWith('#/') && !seen.has(value.$ref)) {
      const target = value.$ref
        .slice(2)
        .split('/')
        .reduce((node: any, key: string) => node?.[key], doc)
      return inline(doc, target, new Set([...seen, value.$ref]))
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, inline(doc, v, seen)]))
  }

  const IRIS = { instances: [SETOSA] }
  const INFER = { id: 'a', inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', data: SETOSA }] }
  // [method, path called, documented path, body?, the status it answers]
  const calls: [string, string, string, unknown, number][] = [
    ['get', '/v1/models/iris', '/v1/models/{name}', undefined, 200],
    ['get', '/v1/models/iris/metadata', '/v1/models/{name}/metadata', undefined, 200],
    ['post', '/v1/models/iris:predict', '/v1/models/{name}:predict', IRIS, 200],
    [
      'post',
      '/v1/models/iris/versions/1:predict',
      '/v1/models/{name}/versions/{version}:predict',
      { inputs: [SETOSA] },
      200,
    ],
    ['post', '/v1/models/iris:predict', '/v1/models/{name}:predict', { instances: [[1, 2]] }, 400],
    ['post', '/v1/models/nope:predict', '/v1/models/{name}:predict', IRIS, 404],
    ['get', '/v2', '/v2', undefined, 200],
    ['get', '/v2/health/live', '/v2/health/live', undefined, 200],
    ['get', '/v2/health/ready', '/v2/health/ready', undefined, 200],
    ['get', '/v2/models/iris', '/v2/models/{name}', undefined, 200],
    ['get', '/v2/models/pair', '/v2/models/{name}', undefined, 200],
    ['get', '/v2/models/iris/versions/1/ready', '/v2/models/{name}/versions/{version}/ready', undefined, 200],
    ['post', '/v2/models/iris/infer', '/v2/models/{name}/infer', INFER, 200],
    ['post', '/v2/models/iris/infer', '/v2/models/{name}/infer', { inputs: [] }, 400],
    ['post', '/v2/models/nope/infer', '/v2/models/{name}/infer', INFER, 404],
    ['post', '/v2/repository/index', '/v2/repository/index', {}, 200],
  ]

  it.each(calls)('%s %s answers what the document says it answers', async (method, path, documented, body, status) => {
    const doc = await documentOf()
    const res = await call(
      path,
      method === 'get'
        ? undefined
        : { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } },
    )
    expect(res.status).toBe(status)
    const response = inline(doc, (doc.paths[documented] as Json)?.[method]?.responses?.[String(status)])
    const schema = response?.content?.['application/json']?.schema
    expect(schema, `${method} ${documented} documents no JSON body for ${status}`).toBeDefined()
    const result = new Validator(schema, '2020-12', false).validate(await res.json())
    expect(result.errors.map((e) => `${e.instanceLocation}: ${e.error}`)).toEqual([])
  })
})
