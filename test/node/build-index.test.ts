/**
 * scripts/build/build-index.mjs refuses, at build time, each model the Worker could not serve — with one
 * line that says what to do — and indexes the others.
 */
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { buildIndex, MAX_ASSET_BYTES, writeAssetsIgnore } from '../../scripts/build/build-index.mjs'

interface Built {
  index: { models: Record<string, { versions: Record<string, unknown>; config?: unknown }> }
  skipped: string[]
  oversized: string[]
}

const ROOT = resolve(import.meta.dirname, '../..')
const IRIS = join(ROOT, 'model-assets/iris/1')
let repo: string

/** A copy of the bundled iris as <repo>/<name>/1/, returned. */
function iris(name: string): string {
  const dir = join(repo, name, '1')
  cpSync(IRIS, dir, { recursive: true })
  return dir
}

const build = (options?: object) => buildIndex(repo, options) as Promise<Built>

beforeEach(() => {
  repo = mkdtempSync(join(tmpdir(), 'build-index-'))
})
afterEach(() => rmSync(repo, { recursive: true, force: true }))

describe('build-index', () => {
  it('indexes a sound model and says nothing', async () => {
    iris('iris')
    const { index, skipped } = await build()
    expect(skipped).toEqual([])
    expect(Object.keys(index.models)).toEqual(['iris'])
  })

  it("names the file to rename when a package's model file is not called model.json", async () => {
    const dir = iris('movenet')
    renameSync(join(dir, 'model.json'), join(dir, 'movenet.json'))
    iris('iris')
    const { index, skipped } = await build()
    expect(skipped).toEqual([expect.stringMatching(/^movenet\/1: no model\.json; the model file is movenet\.json: rename it \(mv \S+movenet\/1\/movenet\.json \S+movenet\/1\/model\.json\)/)])
    expect(Object.keys(index.models)).toEqual(['iris'])
  })

  it('refuses a version whose shard does not match its manifest', async () => {
    const dir = iris('cut')
    const shard = join(dir, 'group1-shard1of1.bin')
    truncateSync(shard, statSync(shard).size - 4)
    const { index, skipped } = await build()
    expect(skipped).toEqual([`cut/1: weight group 1 (group1-shard1of1.bin) holds 520 bytes but model.json describes 524: a shard is truncated or from another model`])
    expect(index.models).toEqual({})
  })

  it('refuses a file over 25 MiB, says how to reshard it, and leaves it out of the assets', async () => {
    const dir = iris('big')
    // Sparse: no 25 MiB is written to disk.
    truncateSync(join(dir, 'group1-shard1of1.bin'), MAX_ASSET_BYTES + 1)
    iris('iris')
    const { index, skipped, oversized } = await build()
    expect(skipped).toEqual([expect.stringMatching(/^big\/1: group1-shard1of1\.bin is 25\.0 MiB, over the 25 MiB a static-asset file may be: npm run reshard -- \S*big\/1$/)])
    expect(oversized).toEqual(['big/1/group1-shard1of1.bin'])
    expect(Object.keys(index.models)).toEqual(['iris'])
  })

  it('refuses a config.json the Worker would refuse, suggesting the key that was meant', async () => {
    iris('typo')
    writeFileSync(join(repo, 'typo/config.json'), JSON.stringify({ max_batch: 2, batching: { max_batch_size: 4, max_queue_delay: 1 } }))
    iris('iris')
    const { index, skipped } = await build()
    expect(skipped).toEqual([
      'typo: config.json is invalid: Invalid input: expected number, received undefined at batching.max_queue_delay_ms; ' +
        'unknown key "max_queue_delay" at batching (did you mean "max_queue_delay_ms"?); unknown key "max_batch" (did you mean "max_batch_size"?)',
    ])
    expect(Object.keys(index.models)).toEqual(['iris'])
  })

  it('keeps an invalid config.json unchecked when asked (the tests of the Worker’s own check)', async () => {
    iris('typo')
    writeFileSync(join(repo, 'typo/config.json'), JSON.stringify({ max_batch: 2 }))
    const { index, skipped } = await build({ keepInvalidConfig: ['typo'] })
    expect(skipped).toEqual([])
    expect(index.models.typo?.config).toEqual({ max_batch: 2 })
  })
})

describe('.assetsignore', () => {
  it("lists the oversized files in build-index's own block and keeps the user's lines", () => {
    writeFileSync(join(repo, '.assetsignore'), '/notes.txt\n')
    writeAssetsIgnore(repo, ['big/1/group1-shard1of1.bin'])
    const text = readFileSync(join(repo, '.assetsignore'), 'utf8')
    expect(text).toMatch(/^\/notes\.txt\n# build-index: .*\n\/big\/1\/group1-shard1of1\.bin\n# end build-index\n$/)
    writeAssetsIgnore(repo, [])
    expect(readFileSync(join(repo, '.assetsignore'), 'utf8')).toBe('/notes.txt\n')
  })

  it('is not written at all when nothing is oversized and the user has none', () => {
    writeAssetsIgnore(repo, [])
    expect(existsSync(join(repo, '.assetsignore'))).toBe(false)
  })
})
