/**
 * The zoo's measured figures are committed (scripts/dev/zoo-memory.json, written by
 * `npm run zoo -- --write-seed`) so that assembling the zoo (the e2e zoo test, `npm run zoo`) does not
 * measure its 13 models again on every fresh clone. They must cover every zoo model under the cache
 * key build-index measures it under today (the model files' digest, the measuring METHOD, the shapes):
 * a package bump or a METHOD change makes them stale, and this file then fails, naming the command.
 * Measuring itself is tested on real models in memory-index.test.ts, with a cache of its own.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { buildIndex } from '../../scripts/build/build-index.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { assembleZoo, readZooSeed, seedZooMeasurements, ZOO, zooKeys } from '../../scripts/dev/zoo.mjs'

interface Seed {
  models: Record<string, { key: string; entry: { memory: unknown } }>
}
interface Built {
  index: { models: Record<string, { versions: Record<string, { memory?: unknown }> }> }
  measuredNow: string[]
}

const WRITE_SEED = 'npm run zoo -- --write-seed'
const names: string[] = ZOO.map((m: { name: string }) => m.name)
let work: string
let models: string

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'zoo-seed-'))
  // Assembled as the e2e zoo test assembles it, without seeding any cache.
  ;({ models } = (await assembleZoo(work, { refused: false, seed: false })) as { models: string })
})
afterAll(() => rmSync(work, { recursive: true, force: true }))
afterEach(() => vi.unstubAllEnvs())

describe("the zoo's committed measurements", () => {
  it('hold every zoo model under the key build-index measures it under today', () => {
    const keys = zooKeys(models) as Record<string, string>
    const seed = (readZooSeed() as Seed).models
    const stale = names.filter((name) => seed[name]?.key !== keys[name])
    expect(
      stale,
      `scripts/dev/zoo-memory.json is missing or stale for ${stale.join(', ')} (a package bump or a new METHOD): run ${WRITE_SEED}`,
    ).toEqual([])
    expect(Object.keys(seed).sort(), `models no longer in the zoo: run ${WRITE_SEED}`).toEqual([...names].sort())
  })

  it("seed build-index's cache: the zoo's repository is indexed with their figures, measuring none", async () => {
    // A cache of this test's own, empty, as on a fresh clone.
    vi.stubEnv('WARMSERVE_MEMORY_CACHE', join(work, 'fresh-cache.json'))
    const { seeded, stale } = seedZooMeasurements(models) as { seeded: string[]; stale: string[] }
    expect(stale, `run ${WRITE_SEED}`).toEqual([])
    expect(seeded).toEqual(names)
    const built = (await buildIndex(models, { measure: true })) as Built
    expect(built.measuredNow).toEqual([])
    const seed = (readZooSeed() as Seed).models
    for (const name of names) expect(built.index.models[name]!.versions['1']!.memory).toEqual(seed[name]!.entry.memory)
  })

  it('are used only under their key: a model whose files changed is left to be measured', () => {
    const cache = join(work, 'changed-cache.json')
    vi.stubEnv('WARMSERVE_MEMORY_CACHE', cache)
    // One byte more in emotion's model.json: another digest, so another key.
    appendFileSync(join(models, 'emotion', '1', 'model.json'), '\n')
    const { seeded, stale } = seedZooMeasurements(models) as { seeded: string[]; stale: string[] }
    expect(stale).toEqual(['emotion'])
    expect(seeded).toEqual(names.filter((name) => name !== 'emotion'))
    const keys = zooKeys(models) as Record<string, string>
    const cached = JSON.parse(readFileSync(cache, 'utf8')) as Record<string, unknown>
    expect(Object.keys(cached).sort()).toEqual(seeded.map((name) => keys[name]!).sort())
    expect(cached[keys.emotion!]).toBeUndefined()
  })
})
