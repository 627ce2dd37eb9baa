#!/usr/bin/env node
// Brings a TF.js model into the repository in one command:
//
//   npm run add-model -- <source> [--name N] [--version V]
//
// <source>: a folder holding a model JSON and its shards (tensorflowjs_converter's output, layers or
// graph), a model JSON file (any name), or a package's JS-packed model (a UMD module exporting the
// model JSON with its shards as base64 modules beside it, as nsfwjs ships them: the folder or its
// model.min.js). Writes model-assets/<name>/<version>/ (MODEL_ASSETS_DIR to write elsewhere),
// reshards files over 25 MiB, reads the signature, writes a starting <name>/config.json when there is
// none, runs build-index's checks and memory measurement on it, and prints its memory and how to
// call it. Nothing is left behind when a check fails.
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { basename, join, relative, resolve } from 'node:path'
import { buildIndex, declaredSignature, MAX_ASSET_BYTES } from '../build/build-index.mjs'
import { MB } from '../build/memory/measure.mjs'
import { importModel, locateModel } from './models/import-model.mjs'
import { startingConfig } from './models/starting-config.mjs'
import { readCommandLine } from './command-line.mjs'
import { reshard } from './reshard.mjs'

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
const VERSION = /^[1-9][0-9]{0,15}$/

/** A model name from the source's path: the file's name without its extensions, or the folder's name for `model.json` / `model.min.js`. */
export function nameFrom(source) {
  const found = locateModel(source)
  const file = basename(found.file).replace(/(\.min)?\.(json|[cm]?js)$/, '')
  const raw = file === 'model' ? basename(resolve(found.dir)) : file
  return raw.replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'model'
}

const versionsOf = (dir) =>
  existsSync(dir)
    ? readdirSync(dir)
        .filter((v) => VERSION.test(v))
        .map(Number)
    : []

/**
 * Adds the model; returns what it wrote and measured. Throws with the reason (the version folder, and
 * a config.json it wrote, are removed first).
 */
export async function addModel(
  source,
  { name, version, root = resolve(process.env.MODEL_ASSETS_DIR ?? 'model-assets') } = {},
) {
  name ??= nameFrom(source)
  if (!MODEL_NAME.test(name))
    throw new Error(
      `'${name}' is not a valid model name (letters, digits, '_', '.', '-'; starting with a letter or digit): give one with --name`,
    )
  const modelDir = join(root, name)
  version ??= String(Math.max(0, ...versionsOf(modelDir)) + 1)
  if (!VERSION.test(String(version))) throw new Error(`version '${version}' is not a positive integer`)
  const dir = join(modelDir, String(version))
  if (existsSync(dir)) throw new Error(`${relative('.', dir)} exists already: give another --version`)
  const configPath = join(modelDir, 'config.json')
  const wroteConfig = !existsSync(configPath)
  const hadModelDir = existsSync(modelDir)
  try {
    const json = importModel(source, dir)
    const big = readdirSync(dir).filter((f) => statSync(join(dir, f)).size > MAX_ASSET_BYTES)
    if (big.length > 0) await reshard(dir)
    const signature = await declaredSignature(json)
    const { config, notes } = startingConfig(signature, { source, json })
    if (wroteConfig) writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`)
    const { index, skipped, refused, unmeasured } = await buildIndex(root, { measure: true, only: name })
    const mine = (list) => list.filter((line) => line.startsWith(`${name}/`) || line.startsWith(`${name}:`))
    const problems = [...mine(skipped), ...mine(refused)]
    if (problems.length > 0) throw new Error(problems.join('; '))
    const entry = index.models[name]?.versions[version]
    if (!entry) throw new Error(`${name}/${version} did not make it into the index`)
    return {
      name,
      version: Number(version),
      dir,
      entry,
      config: wroteConfig ? config : undefined,
      notes,
      unmeasured: mine(unmeasured),
      resharded: big,
    }
  } catch (error) {
    rmSync(hadModelDir ? dir : modelDir, { recursive: true, force: true })
    if (wroteConfig && hadModelDir) rmSync(configPath, { force: true })
    throw error
  }
}

/**
 * The command line (`npm run add-model -- …argv`): adds the model, prints what it wrote and measured and
 * how to call it through `log`, a failure through `error`; resolves to the exit code.
 */
export async function main(argv, { log = console.log, error: fail = console.error } = {}) {
  const usage = 'usage: npm run add-model -- <folder | model.json | model.min.js> [--name N] [--version V]'
  const read = readCommandLine(
    argv,
    { name: { type: 'string' }, version: { type: 'string' } },
    { allowPositionals: true },
  )
  if (read.problem !== undefined) {
    fail(`[add-model] ${read.problem}\n${usage}`)
    return 2
  }
  if (read.help) {
    log(usage)
    return 0
  }
  const { values, positionals } = read
  if (positionals.length !== 1) {
    fail(usage)
    return 2
  }
  let added
  try {
    added = await addModel(positionals[0], values)
  } catch (error) {
    fail(`[add-model] ${error.message}`)
    return 1
  }
  const { name, version, dir, entry, config, notes, unmeasured, resharded } = added
  log(
    `[add-model] ${relative('.', dir)}: ${entry.format}, ${MB(entry.totalBytes)} MB of files${resharded.length ? ` (resharded ${resharded.join(', ')})` : ''}`,
  )
  for (const s of ['inputs', 'outputs'])
    for (const t of entry.signature?.[s] ?? [])
      log(`  ${s.slice(0, -1)} ${t.name}: ${t.dtype} [${(t.shape ?? ['?']).join(', ')}]`)
  if (entry.memory) {
    const m = entry.memory
    log(
      `  memory: ${MB(m.weightBytes)} MB of weights; ${MB(m.restingBytes)} MB held while loaded, ${MB(m.heapBytes1)} MB of wasm heap to run 1 row${m.heapBytes4 ? `, ${MB(m.heapBytes4)} MB for 4` : ''}`,
    )
  } else {
    log(`  memory: not measured here (${unmeasured.join('; ')}); the Worker measures it as it loads`)
  }
  // The model's config.json, beside its version folders: written now, or the one it had.
  const configFile = join(dir, '..', 'config.json')
  if (config) log(`  wrote ${relative('.', configFile)}; check:\n    - ${notes.join('\n    - ')}`)
  const served = existsSync(configFile) ? JSON.parse(readFileSync(configFile, 'utf8')) : {}
  const image = Object.keys(served.inputs ?? {}).length > 0
  log('  call it (npm run dev):')
  // :classify answers class names, so it needs `labels`, which no package's files carry: without them the
  // photo goes to :predict, base64 in JSON, and the scores come back.
  if (image && served.labels !== undefined)
    log(
      `    curl -s -X POST localhost:8787/v1/models/${name}:classify -H 'Content-Type: image/jpeg' --data-binary @test/fixtures/models/_images/chelsea.jpg`,
    )
  else if (image)
    log(
      `    printf '{"instances":[{"b64":"%s"}]}' "$(base64 < test/fixtures/models/_images/chelsea.jpg | tr -d '\\n')" | curl -s -X POST localhost:8787/v1/models/${name}:predict --data-binary @-`,
    )
  log(`    curl -s localhost:8787/v1/models/${name}/metadata`)
  return 0
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await main(process.argv.slice(2))
