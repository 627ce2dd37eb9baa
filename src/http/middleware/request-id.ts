/** @module http/middleware/request-id — every request gets an id of the server's own, in X-Request-Id and the logs. */
import type { MiddlewareHandler } from 'hono'

declare module 'hono' {
  interface ContextVariableMap {
    /** The id this server gave the request: the `X-Request-Id` response header and `requestId` in the logs. */
    requestId: string
    /** The `X-Request-Id` the client sent, cut and sanitized: only to match the client's own logs. */
    clientRequestId?: string
  }
}

/** Characters of a client's id kept: room for a UUID, a trace id or a W3C traceparent (55). */
const MAX_CLIENT_ID = 128

/** A client's id as the logs keep it: at most MAX_CLIENT_ID characters, printable ASCII (anything else becomes '?'). */
export function clientRequestId(header: string | undefined): string | undefined {
  return header ? header.slice(0, MAX_CLIENT_ID).replace(/[^\x21-\x7e]/g, '?') : undefined
}

/**
 * Gives each request a fresh UUID. A client's `X-Request-Id` is never used as the id: ids a client
 * chooses can be forged or reused, and the logs would then mix requests up. It is kept apart as
 * `clientRequestId`.
 */
export function requestId(): MiddlewareHandler {
  return async function requestId(c, next) {
    const id = crypto.randomUUID()
    c.set('requestId', id)
    const client = clientRequestId(c.req.header('X-Request-Id'))
    if (client !== undefined) c.set('clientRequestId', client)
    c.header('X-Request-Id', id)
    await next()
  }
}
