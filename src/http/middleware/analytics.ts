/**
 * @module http/middleware/analytics — an inference request's Analytics Engine point (src/analytics/analytics.ts),
 * when the `INFERENCE` dataset is bound: the request's own facts (route, colo, bytes, timings,
 * status), with what the layers below noted on its `record` on the way.
 */
import type { MiddlewareHandler } from 'hono'
import { datasetOf, PointWriter, RequestRecord } from '../../analytics/analytics'
import type { Fields } from '../../analytics/analytics'
import { isolate } from '../../isolate'
import type { AppEnv } from '../common'

/**
 * The inference routes, by path (POST only), and the model name each names. The TF Serving verbs
 * include the task verbs (`:detect`, `:embed`) so that they count from the day they are served.
 */
const ROUTES: ReadonlyArray<readonly [RegExp, string | ((verb: string) => string)]> = [
  [
    /^\/v1\/models\/([^/:]+)(?:\/(?:versions|labels)\/[^/:]+)?:(predict|classify|detect|embed)$/,
    (verb) => `tf-serving:${verb}`,
  ],
  [/^\/v2\/models\/([^/]+)(?:\/versions\/[^/]+)?\/infer$/, 'v2:infer'],
]

/** The route and model of an inference request's path, else undefined. */
export function inferenceRoute(method: string, path: string): { route: string; model: string } | undefined {
  if (method !== 'POST') return undefined
  for (const [pattern, route] of ROUTES) {
    const match = pattern.exec(path)
    if (!match) continue
    let model = match[1]!
    try {
      model = decodeURIComponent(model)
    } catch {
      // Left as sent: the route answers the bad name itself.
    }
    return { route: typeof route === 'string' ? route : route(match[2]!), model }
  }
  return undefined
}

/**
 * Writes one point per inference request, once its response body has been sent (so `bytes_out` is
 * what went out), and the model loads and unloads waiting, in every request. Without the binding
 * it does nothing.
 */
export function analytics(): MiddlewareHandler<AppEnv> {
  return async function analytics(c, next) {
    const dataset = datasetOf(c.env)
    if (!dataset) return next()
    const writer = new PointWriter(dataset)
    const state = isolate()
    state.analytics.requestStarted()
    const url = new URL(c.req.url)
    const inference = inferenceRoute(c.req.method, url.pathname)
    if (!inference) {
      await next()
      state.analytics.drainInto(writer)
      return
    }
    const started = Date.now()
    const record = new RequestRecord(writer, state.analytics, {
      ...inference,
      colo: (c.req.raw.cf as { colo?: unknown } | undefined)?.colo?.toString() ?? '',
      request_id: c.get('requestId'),
      bytes_in: Number(c.req.header('content-length') ?? 0) || 0,
    })
    c.set('record', record)
    await next()
    const { status } = c.res
    const facts: Fields = { total_ms: Date.now() - started, decode_ms: c.get('decodeMs') ?? 0 }
    const error = c.error
    const finish = (bytesOut: number) => record.finish(status, error, { ...facts, bytes_out: bytesOut })
    c.res = counted(c.res, finish)
  }
}

/** `response` with its body counted as it is sent; `done` gets the bytes once it ends or is cancelled. */
function counted(response: Response, done: (bytes: number) => void): Response {
  const body = response.body
  if (!body) {
    done(0)
    return response
  }
  let bytes = 0
  let ended = false
  const end = () => {
    if (ended) return
    ended = true
    done(bytes)
  }
  const reader = body.getReader()
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done: finished, value } = await reader.read()
        if (finished) {
          end()
          controller.close()
          return
        }
        bytes += value.byteLength
        controller.enqueue(value)
      } catch (error) {
        end()
        controller.error(error)
      }
    },
    cancel(reason) {
      end()
      return reader.cancel(reason)
    },
  })
  return new Response(stream, { status: response.status, statusText: response.statusText, headers: response.headers })
}
