/**
 * Runs before every workerd test file. The files share one module graph per worker (`isolate:
 * false` in vitest.config.ts: tf.js is imported once, not once per file), so each file starts from
 * what a fresh isolate has: a new isolate state, and an empty R2 bucket.
 */
import { env } from 'cloudflare:workers'
import { beforeAll } from 'vitest'
import { resetIsolate } from '../../src/isolate'
import { emptyBucket } from './r2-helpers'

beforeAll(async () => {
  resetIsolate()
  await emptyBucket(env.MODELS)
})
