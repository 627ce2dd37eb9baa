// Values vitest.config.ts hands the tests through `provide`.
import 'vitest'

declare module 'vitest' {
  export interface ProvidedContext {
    /** How many requests test/soak.test.ts sends. */
    soakRequests: number
    /** Where test/e2e/global-setup.ts hands out the shared `wrangler dev` (test/e2e/servers.ts). */
    e2eServers: string
    /** Where test/node/global-setup.ts writes the typed client's check results. */
    clientChecks: string
  }
}
