// Values vitest.config.ts hands the tests through `provide`.
import 'vitest'

declare module 'vitest' {
  export interface ProvidedContext {
    /** How many requests test/soak.test.ts sends. */
    soakRequests: number
  }
}
