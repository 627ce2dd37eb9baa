/**
 * scripts/tools/publish-model.mjs refuses to upload over a version the cron handler accepted (issue 24,
 * finding 8): the bucket is miniflare's R2, as `wrangler dev` keeps it locally.
 */
import { join } from 'node:path'
import { convertV4MiniflareOptions, Miniflare } from 'miniflare'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { publishVersion } from '../../scripts/tools/publish-model.mjs'
import { ROOT } from '../../scripts/tools/launch.mjs'

let mf: Miniflare
/** The part of R2's API the test reads. */
interface Bucket {
  put(key: string, value: string): Promise<unknown>
  list(options: { prefix: string }): Promise<{ objects: unknown[] }>
  head(key: string): Promise<unknown>
}
let bucket: Bucket
const IRIS = join(ROOT, 'model-assets/iris/1')

beforeAll(async () => {
  // As publish-model opens the local bucket itself (withLocalBucket), without a folder to persist to.
  mf = new Miniflare(
    convertV4MiniflareOptions({
      modules: true,
      script: 'export default { fetch: () => new Response(null, { status: 404 }) }',
      r2Buckets: { BUCKET: 'bucket' },
    }),
  )
  bucket = (await mf.getR2Bucket('BUCKET')) as unknown as Bucket
})

afterAll(() => mf?.dispose())

describe('publish-model', () => {
  it('refuses an accepted version number before uploading anything, and names the next free number', async () => {
    // The pointer as the cron handler writes it once it accepted iris/2 (only the fields read here).
    await bucket.put(
      '_pointer.json',
      JSON.stringify({
        schema: 1,
        publishedAt: '',
        models: { iris: { current: 2, versions: { '2': {} }, rejected: {} } },
      }),
    )
    await expect(publishVersion(bucket, { dir: IRIS, name: 'iris', version: 2 })).rejects.toThrow(
      'iris/2 is already accepted, and an accepted version never changes (serving isolates and the prediction cache keep it): publish these files as a new number, e.g. 3',
    )
    expect((await bucket.list({ prefix: 'iris/2/' })).objects).toEqual([])
    const manifest = await publishVersion(bucket, { dir: IRIS, name: 'iris', version: 3 })
    expect(manifest.files.map((f: { path: string }) => f.path)).toEqual(['model.json', 'group1-shard1of1.bin'])
    expect(await bucket.head('iris/3/manifest.json')).not.toBeNull()
  })
})
