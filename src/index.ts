/** warmserve: TF.js models served from a Worker, built once per warm isolate. */
import { env } from 'cloudflare:workers'
import { app } from './http/app'
import { scheduled } from './cron'
import { isolate } from './isolate'

// What every isolate does before its first answer, done while the module is evaluated rather than
// on the first request: Hono compiles its routes into one regular expression on the first match,
// the isolate's state (cache, metrics, traffic control) is made, and the tf.js backend that
// TF_BACKEND names starts (the wasm module is compiled already; this instantiates it). None is I/O,
// which global scope forbids. Cloudflare evaluates a Worker's global scope as it starts the
// isolate, which it begins while the TLS handshake of the connection that needs it is under way.
app.router.match('GET', '/')
try {
  isolate().startBackend(env)
} catch {
  // Vars that do not parse: every request that needs them answers what is wrong (core/config.ts).
}

export default { fetch: app.fetch, scheduled } satisfies ExportedHandler<Env>

/** The service-binding entrypoint other Workers call (src/rpc/entrypoint.ts). */
export { Models } from './rpc/entrypoint'
