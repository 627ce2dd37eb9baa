/**
 * @module http/middleware/release-body — frees a request's body buffers (its bytes, a JSON body's packed
 * numbers; http/body.ts) once its answer is made, rather than at V8's next collection, so that a finished
 * request's megabytes do not count against the isolate while the next ones run.
 */
import { createMiddleware } from 'hono/factory'
import { tf } from '../../runtime/tf'
import { releaseBody } from '../body'

/**
 * Only on tf.js's wasm backend, which copies a tensor's values onto its heap when the tensor is made:
 * on the cpu backend a tensor keeps the array it was made from, and one may outlive the answer (a shadow
 * run's copy of the inputs, run after the response).
 */
export const releaseBodies = () =>
  createMiddleware(async (c, next) => {
    try {
      await next()
    } finally {
      if (tf.getBackend() === 'wasm') releaseBody(c.req.raw)
    }
  })
