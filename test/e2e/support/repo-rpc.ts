/**
 * The models of the service-binding and prediction-cache tests (test/rpc.test.ts in workerd,
 * test/e2e/rpc.test.ts through the deploy bundle in workerd): copies of the bundled models, each with a
 * config.json that turns the prediction cache on, as a user writes it.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { addPackagedModel } from './models.ts'

const ASSETS = resolve(import.meta.dirname, '../../../model-assets')
const HUMAN = resolve(import.meta.dirname, '../../../node_modules/@vladmandic/human/models')

/** How long the test models keep an answer: long enough that nothing expires during a run. */
export const CACHE_TTL_SECONDS = 300

/**
 * Writes into `repo`: `cache-digits` (digits, its image input and labels, with `response_cache`),
 * `cache-iris` versions 1 and 2 (the same weights, so only the version tells their answers apart),
 * and `cache-emotion`, @vladmandic/human's emotion net (a conv net on 64×64 grayscale photos, see
 * test/e2e/support/image-models.ts), for the hit and miss latencies of an image model.
 */
export async function addRpcModels(repo: string): Promise<void> {
  const digits = JSON.parse(readFileSync(join(ASSETS, 'digits/config.json'), 'utf8')) as Record<string, unknown>
  cpSync(join(ASSETS, 'digits/1'), join(repo, 'cache-digits/1'), { recursive: true })
  writeFileSync(
    join(repo, 'cache-digits/config.json'),
    JSON.stringify({ ...digits, response_cache: { ttl_seconds: CACHE_TTL_SECONDS } }, null, 2),
  )
  for (const version of ['1', '2'])
    cpSync(join(ASSETS, 'iris/1'), join(repo, 'cache-iris', version), { recursive: true })
  mkdirSync(join(repo, 'cache-iris'), { recursive: true })
  writeFileSync(
    join(repo, 'cache-iris/config.json'),
    JSON.stringify({ response_cache: { ttl_seconds: CACHE_TTL_SECONDS } }, null, 2),
  )
  addPackagedModel(repo, 'cache-emotion', join(HUMAN, 'emotion.json'))
  const emotion = {
    inputs: { 'input_1:0': { image: { size: [64, 64], channels: 1, range: [-1, 1] } } },
    labels: ['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral'],
    classify: { top_k: 3 },
    response_cache: { ttl_seconds: CACHE_TTL_SECONDS },
  }
  writeFileSync(join(repo, 'cache-emotion/config.json'), JSON.stringify(emotion, null, 2))
}
