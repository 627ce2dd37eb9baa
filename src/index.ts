/** warmserve: TF.js models served from a Worker, built once per warm isolate. */
import { app } from './app'
import { scheduled } from './scheduled'

export default { fetch: app.fetch, scheduled } satisfies ExportedHandler<Env>
