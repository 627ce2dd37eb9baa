// The OpenAPI document as `wrangler dev` (the shared one) serves it, checked by an OpenAPI 3.1 schema validator.
// In Node: the validator (ajv) compiles schemas with `new Function`, which workerd forbids.
import { Validator } from '@seriousme/openapi-schema-validator'
import { beforeAll, describe, expect, it } from 'vitest'
import { sharedDevServer } from './support/servers'

let server: { url: string }

beforeAll(async () => {
  server = await sharedDevServer()
})

describe('/openapi.json from wrangler dev', () => {
  it('validates as OpenAPI 3.1', async () => {
    const res = await fetch(`${server.url}/openapi.json`)
    expect(res.status).toBe(200)
    const document = (await res.json()) as Record<string, unknown>
    const validator = new Validator()
    const result = await validator.validate(document)
    expect(result.errors ?? []).toEqual([])
    expect(result.valid).toBe(true)
    expect(validator.version).toBe('3.1')
  })

  it('is rendered by /docs with Swagger UI from the Worker itself', async () => {
    const html = await (await fetch(`${server.url}/docs`)).text()
    expect(html).not.toMatch(/https?:\/\//)
    const bundle = await fetch(`${server.url}/ui/vendor/swagger-ui-bundle.js`)
    expect(bundle.status).toBe(200)
    expect((await bundle.arrayBuffer()).byteLength).toBeGreaterThan(1_000_000)
  })
})
