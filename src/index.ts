/** warmserve: TF.js models served from a Worker, built once per warm isolate. */
import { app } from './http/app'
import { scheduled } from './cron'

export default { fetch: app.fetch, scheduled } satisfies ExportedHandler<Env>

/** The service-binding entrypoint other Workers call (src/rpc/entrypoint.ts). */
export { Models } from './rpc/entrypoint'
