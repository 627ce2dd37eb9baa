/**
 * @module http/client — the types `hono/client` needs to call warmserve, for `hc<WarmserveApp>(url)`.
 *
 * `App` (http/app.ts) carries the Worker's bindings (`Env`, `R2Bucket`, …), which exist only in
 * this project's generated runtime types; a client needs only the routes. `npm run build:client`
 * expands this schema into client/index.d.ts, which depends on nothing but hono.
 */
import type { Hono } from 'hono'
import type { ExtractSchema } from 'hono/types'
import type { App } from './app'

/** Every route's path, method, parameters and JSON responses. */
export type WarmserveSchema = ExtractSchema<App>
/** The app as a client sees it: routes without the Worker's bindings. */
export type WarmserveApp = Hono<{}, WarmserveSchema, '/'>
