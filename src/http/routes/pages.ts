/**
 * @module http/routes/pages — the try-it page (`/`), the API docs (`/docs`) and their files (`/ui/…`).
 *
 * The files live in `model-assets/_ui/` and are read through the ASSETS binding, like the models:
 * with `run_worker_first` nothing in the assets folder is public, so only what these routes map
 * under `_ui/` is served, and model files stay private. A leading `_` is never a model name
 * (scripts/build/build-index.mjs), so the folder cannot shadow one. Keeping the pages out of the Worker
 * bundle keeps it small: Swagger UI alone is about 1.9 MB.
 */
import { Hono } from 'hono'
import type { Context } from 'hono'
import { notFound } from '../../core/errors'
import { routeDocs } from '../openapi'
import type { AppEnv } from '../common'

/** Where the page files are, inside the assets folder. */
const UI_DIR = '/_ui'

// Path segments of a page file: no empty, hidden or dot-dot segment, so nothing outside _ui/ is reachable.
const UI_FILE = /^[A-Za-z0-9_-][A-Za-z0-9._-]*(?:\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/

/** Serves `_ui/<file>` from the assets, 404 (our JSON error) if it is not there. */
async function uiFile(c: Context<AppEnv>, file: string): Promise<Response> {
  if (!UI_FILE.test(file)) throw notFound(`no route for ${c.req.method} ${new URL(c.req.url).pathname}`)
  // The client's own headers go along, so If-None-Match gets a 304 from the assets.
  const res = await c.env.ASSETS.fetch(
    new Request(new URL(`${UI_DIR}/${file}`, c.req.url), { headers: c.req.raw.headers }),
  )
  if (res.status === 404) {
    throw notFound(
      `${new URL(c.req.url).pathname}: the page files are missing from the assets (run the [build] command: node scripts/build/build-ui.mjs)`,
    )
  }
  // Through the context, so the headers the middleware set (X-Request-Id) are kept.
  return c.newResponse(res.body, res.status as 200, Object.fromEntries(res.headers))
}

export const pages = new Hono<AppEnv>()
  .get('/', routeDocs.tryIt, (c) => uiFile(c, 'index.html'))
  .get('/docs', routeDocs.docs, (c) => uiFile(c, 'docs.html'))
  .get('/ui/*', (c) => uiFile(c, new URL(c.req.url).pathname.slice('/ui/'.length)))
