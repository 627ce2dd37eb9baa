/**
 * The models of the service-binding and prediction-cache tests (test/rpc.test.ts in workerd,
 * test/e2e/rpc.test.ts through `wrangler dev`): copies of the bundled models, each with a
 * config.json that turns the prediction cache on, as a user writes it.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

const ASSETS = resolve(import.meta.dirname, '../../model-assets')

/** How long the test models keep an answer: long enough that nothing expires during a run. */
export const CACHE_TTL_SECONDS = 300

/**
 * Writes into `repo`: `cache-digits` (digits, its image input and labels, with `response_cache`) and
 * `cache-iris` versions 1 and 2 (the same weights, so only the version tells their answers apart).
 */
export async function addRpcModels(repo: string): Promise<void> {
  const digits = JSON.parse(readFileSync(join(ASSETS, 'digits/config.json'), 'utf8')) as Record<string, unknown>
  cpSync(join(ASSETS, 'digits/1'), join(repo, 'cache-digits/1'), { recursive: true })
  writeFileSync(join(repo, 'cache-digits/config.json'), JSON.stringify({ ...digits, response_cache: { ttl_seconds: CACHE_TTL_SECONDS } }, null, 2))
  for (const version of ['1', '2']) cpSync(join(ASSETS, 'iris/1'), join(repo, 'cache-iris', version), { recursive: true })
  mkdirSync(join(repo, 'cache-iris'), { recursive: true })
  writeFileSync(join(repo, 'cache-iris/config.json'), JSON.stringify({ response_cache: { ttl_seconds: CACHE_TTL_SECONDS } }, null, 2))
}
