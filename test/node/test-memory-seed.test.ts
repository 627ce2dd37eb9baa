/**
 * The measured memory of the models the tests measure (the bundled models, the iris versions the e2e
 * files publish, js-heap's MobileNetV2, memory-index's antispoof) is committed (scripts/dev/test-memory.json, written by
 * `node scripts/dev/test-memory.mjs --write-seed`) and added to the measuring cache by vitest.config.ts,
 * so that a fresh clone's `npm test` does not measure them again. The figures must be those of the
 * models as the tests make them today, under the cache key build-index measures them under (the model
 * files' digest, the measuring METHOD, the shapes): a model, package or METHOD change makes them stale,
 * and this file then fails, naming the command. Measuring itself is tested in memory-index.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { seedFrom } from '../../scripts/build/memory/seed.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { measureTestModels, TEST_SEED } from '../../scripts/dev/test-memory.mjs'

interface Seed {
  measurements: Record<string, { folders: string; entry: unknown }>
}

const WRITE_SEED = 'node scripts/dev/test-memory.mjs --write-seed'
let work: string

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'test-memory-seed-'))
})
afterAll(() => {
  vi.unstubAllEnvs()
  rmSync(work, { recursive: true, force: true })
})

describe("the tests' committed measurements", () => {
  it('are what the tests measure today: seeded, the models made as the tests make them measure none', async () => {
    // A cache of this test's own, holding the committed figures only, as on a fresh clone.
    const cache = join(work, 'cache.json')
    vi.stubEnv('WARMSERVE_MEMORY_CACHE', cache)
    const { measurements } = JSON.parse(readFileSync(TEST_SEED, 'utf8')) as Seed
    expect(seedFrom(TEST_SEED)).toBe(Object.keys(measurements).length)
    const { entries, keys } = (await measureTestModels(join(work, 'models'), cache)) as {
      entries: Record<string, unknown>
      keys: Record<string, string[]>
    }
    const stale = Object.keys(keys).filter((key) => !(key in measurements))
    expect(
      stale.map((key) => keys[key]!.join(', ')),
      `scripts/dev/test-memory.json is missing or stale for these (a model, package or METHOD change): run ${WRITE_SEED}`,
    ).toEqual([])
    expect(
      Object.keys(measurements).sort(),
      `scripts/dev/test-memory.json holds figures no test measures: run ${WRITE_SEED}`,
    ).toEqual(Object.keys(keys).sort())
    // Nothing measured: the cache holds the committed figures, unchanged.
    expect(entries).toEqual(Object.fromEntries(Object.entries(measurements).map(([key, { entry }]) => [key, entry])))
  }, 120_000)
})
