/**
 * A Worker that calls warmserve through a service binding, as a user's Worker would
 * (wrangler.toml beside this file: `[[services]] binding = "MODELS" service = "warmserve" entrypoint = "Models"`).
 * Used by test/rpc.test.ts (an auxiliary Worker of the vitest pool) and test/e2e/rpc.test.ts (in front
 * of the deploy bundle in Miniflare: scripts/tools/launch.mjs startBundle `front`; or `wrangler dev -c`).
 *
 * - RPC `call(method, ...args)`: calls `env.MODELS[method](...args)` and returns `{value}`, or
 *   `{error: {message, status, isError}}` as the caller saw the rejection.
 * - HTTP `POST /call` with `{"method", "args"}`: the same, as JSON, typed arrays as
 *   `{"typed": "Float32Array", "values": [...]}`, with `ms`, the call's time seen from here.
 * - HTTP `POST /classify/{model}` with an image body: `env.MODELS.run(model, {image})`, with `ms`
 *   (`?nocache` passes `{cache: false}`).
 * - Any other request, where a `WARMSERVE` binding is given: forwarded to warmserve's HTTP API.
 *
 * @typedef {import('../../../../src/rpc/types').ModelsService} ModelsService
 */
import { WorkerEntrypoint } from 'cloudflare:workers'

const METHODS = ['run', 'infer', 'metadata', 'list']

/** @param {unknown} value */
const plain = (value) =>
  JSON.parse(
    JSON.stringify(value, (_key, v) =>
      ArrayBuffer.isView(v)
        ? { typed: v.constructor.name, values: Array.from(v, (x) => (typeof x === 'bigint' ? Number(x) : x)) }
        : v,
    ),
  )

/** @param {unknown} value */
const typed = (value) =>
  JSON.parse(JSON.stringify(value), (_key, v) =>
    v && typeof v === 'object' && typeof v.typed === 'string' && Array.isArray(v.values)
      ? new globalThis[v.typed](v.values)
      : v,
  )

export default class Caller extends WorkerEntrypoint {
  /**
   * @param {string} method
   * @param {unknown[]} args
   */
  async call(method, ...args) {
    if (!METHODS.includes(method)) throw new Error(`no method ${method}`)
    /** @type {ModelsService} */
    const models = this.env.MODELS
    try {
      return { value: await models[method](...args) }
    } catch (error) {
      return { error: { message: error.message, status: error.status, isError: error instanceof Error } }
    }
  }

  /** @param {Request} request */
  async fetch(request) {
    const url = new URL(request.url)
    if (request.method === 'POST' && url.pathname === '/call') {
      const { method, args } = await request.json()
      const started = performance.now()
      const result = await this.call(method, ...typed(args ?? []))
      return Response.json({ ...plain(result), ms: performance.now() - started })
    }
    const classify = url.pathname.match(/^\/classify\/([^/]+)$/)
    if (request.method === 'POST' && classify) {
      const image = new Uint8Array(await request.arrayBuffer())
      const options = url.searchParams.has('nocache') ? { cache: false } : undefined
      const started = performance.now()
      const result = await this.call('run', decodeURIComponent(classify[1]), { image }, options)
      return Response.json({ ...plain(result), ms: performance.now() - started })
    }
    // In front (wrangler dev's primary, Miniflare's first Worker: the only one serving HTTP there): every
    // other request goes on to warmserve's own HTTP API, through a plain service binding.
    if (this.env.WARMSERVE) return this.env.WARMSERVE.fetch(request)
    return Response.json({ error: `no route for ${request.method} ${url.pathname}` }, { status: 404 })
  }
}
