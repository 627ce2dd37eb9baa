/**
 * @module http/routes/admin — operator endpoints for this isolate: see its cache, reload or unload a model.
 * Off (404, as if absent) unless the Worker secret ADMIN_TOKEN is set; then every request needs
 * `Authorization: Bearer <token>`, compared in constant time, else 401.
 * They act on the isolate that answers, which in production is one of many: `reload` makes that one
 * follow the R2 pointer now, the others follow it within REFRESH_INTERVAL.
 */
import { Hono } from 'hono'
import type { MiddlewareHandler } from 'hono'
import type { StringVars } from '../../core/config'
import { ApiError, notFound } from '../../core/errors'
import { isolate } from '../../isolate'
import { routeDocs } from '../openapi'
import { parseVersion } from '../../protocols/selector'
import { waitUntilOf } from '../common'
import type { AppEnv } from '../common'

const encoder = new TextEncoder()

/**
 * Compares two secrets in constant time. Hashing both first makes them the same length, so neither
 * the length nor any prefix of the token leaks through timing.
 */
async function sameSecret(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([a, b].map((s) => crypto.subtle.digest('SHA-256', encoder.encode(s))))
  return crypto.subtle.timingSafeEqual(x!, y!)
}

/** 404 when the admin API is off, 401 without the right bearer token. */
function adminAuth(): MiddlewareHandler<AppEnv> {
  return async function adminAuth(c, next) {
    const token = (c.env as StringVars).ADMIN_TOKEN
    if (!token) throw notFound(`no route for ${c.req.method} ${new URL(c.req.url).pathname}`)
    const match = /^Bearer (.+)$/i.exec(c.req.header('Authorization') ?? '')
    if (!match || !(await sameSecret(match[1]!.trim(), token))) {
      throw new ApiError(401, 'the admin API needs Authorization: Bearer <ADMIN_TOKEN>', {
        'WWW-Authenticate': 'Bearer realm="warmserve admin"',
      })
    }
    await next()
  }
}

export const admin = new Hono<AppEnv>()
  .use('/admin/*', adminAuth())
  // This isolate's cache: every version held or loading, leases, bytes, counters, tf.js memory, the pointer it follows.
  .get('/admin/cache', routeDocs.adminCache, (c) => c.json(isolate().status(c.env)))
  // Follows the R2 pointer now, then builds the model's default version afresh beside the one serving and switches.
  .post('/admin/models/:name/reload', routeDocs.adminReload, async (c) => {
    const name = c.req.param('name')
    const { target, resident, pointer } = await isolate().reload(c.env, name)
    return c.json({
      model: name,
      version: String(target.version),
      source: target.entry.source ?? 'assets',
      resident,
      pointer,
    })
  })
  // Drops every loaded version of the model (or one, with ?version=); in-flight requests finish first.
  .post('/admin/models/:name/unload', routeDocs.adminUnload, async (c) => {
    const name = c.req.param('name')
    const unloaded = await isolate().unload(c.env, name, parseVersion(c.req.query('version')), waitUntilOf(c))
    return c.json({ model: name, unloaded })
  })
