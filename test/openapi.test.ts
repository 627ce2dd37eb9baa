import { describe, expect, it } from 'vitest'
import { app } from '../src/http/app'
import { documentedPath } from '../src/http/openapi'
import { call } from './helpers'

type Doc = { openapi: string; paths: Record<string, Record<string, { responses: Record<string, unknown>; requestBody?: any }>> }

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
    const served = new Set(app.routes.filter((r) => !internal(r)).map((r) => `${r.method.toLowerCase()} ${documentedPath(r.method, r.path)}`))
    const documented = Object.entries(paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`))
    expect(documented.filter((op) => !served.has(op))).toEqual([])
  })

  it('shows TF Serving predict at the paths clients call, with the body the route validates', async () => {
    const { paths } = await documentOf()
    for (const path of ['/v1/models/{name}:predict', '/v1/models/{name}/versions/{version}:predict', '/v1/models/{name}/labels/{label}:predict']) {
      const op = paths[path]!.post!
      expect(Object.keys(op.responses).sort()).toEqual(['200', '400', '404', '405', '413', '415', '503'])
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
