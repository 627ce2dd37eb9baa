#!/usr/bin/env node
// Writes <assets>/_index.json: every model, version, format, declared signature and byte size
// in the repository. Static assets cannot be listed at run time, so the Worker reads this.
// Runs as wrangler's [build] command, so `wrangler dev` and `wrangler deploy` both refresh it.
//
// Layout (TF Serving's): <assets>/<name>/<version>/model.json plus weight shards,
// with <version> a positive integer, and optionally <assets>/<name>/config.json. The assets folder is MODEL_ASSETS_DIR, else ./model-assets.
//
// Each version is checked as the Worker would find it, so a model that cannot be served is skipped
// here with one line saying why, and the others serve: the model file's name, every file within the
// static-asset size limit, shard sizes against the weights manifest, and config.json against the
// Worker's own schema (src/repository/model-config.ts, imported as is). Files over the limit are
// listed in <assets>/.assetsignore, since wrangler refuses to start with them.
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join, relative, resolve, sep } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import * as tfl from '@tensorflow/tfjs-layers'
import { checkModelConfig, labelLines } from '../src/repository/model-config.ts'
import { detectProblems } from '../src/repository/detect-layout.ts'
import { manifestBytes } from '../src/repository/weights.ts'

export const INDEX_FILE = '_index.json'
/** The one name the Worker reads a version's model from (src/repository/model-files.ts), as TF Serving's layout has it. */
export const MODEL_FILE = 'model.json'
/** Wrangler refuses to serve or upload a static-asset file larger than this (it says "Asset too large"). */
export const MAX_ASSET_BYTES = 25 * 1024 * 1024
const ASSETS_IGNORE = '.assetsignore'
const IGNORE_BEGIN = '# build-index: files over 25 MiB, left out of the assets (npm run reshard -- <version folder> splits them)'
const IGNORE_END = '# end build-index'
// Names become URL path segments; a leading letter or digit also keeps them clear of _index.json.
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
const VERSION = /^[1-9][0-9]{0,15}$/

const isDir = (path) => statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false

/** Inputs and outputs as model.json declares them; outputs of graphs without a signature are only known once built. */
async function declaredSignature(json) {
  const topology = json.modelTopology ?? {}
  if (json.signature?.inputs) {
    const side = (group) =>
      Object.entries(group ?? {}).map(([name, info]) => ({
        name,
        dtype: info.dtype,
        shape: info.tensorShape?.unknownRank ? null : (info.tensorShape?.dim ?? []).map((d) => Number(d.size ?? -1)),
      }))
    return { inputs: side(json.signature.inputs), outputs: side(json.signature.outputs) }
  }
  if (Array.isArray(topology.node)) {
    const inputs = topology.node
      .filter((node) => node.op === 'Placeholder')
      .map((node) => ({
        name: node.name,
        dtype: node.attr?.dtype?.type,
        shape: node.attr?.shape?.shape?.unknownRank ? null : (node.attr?.shape?.shape?.dim ?? []).map((d) => Number(d.size ?? -1)),
      }))
    return { inputs, outputs: null }
  }
  return layersSignature(json)
}

/**
 * A layers model's inputs and outputs, as the Worker's runtime names them (runtime/servable.ts: each
 * after its layer), worked out by tf.js itself from the topology: the layers are built with initial
 * weights and thrown away, no weights are read. So metadata can be answered without loading the model.
 * A topology tf.js cannot build (a custom layer) gives no signature; the Worker's load will say why.
 */
async function layersSignature(json) {
  // workerd aside, tf.js in Node nags about tfjs-node; the cpu backend is all this needs.
  tf.env().set('IS_NODE', false)
  if (tf.getBackend() !== 'cpu') await tf.setBackend('cpu')
  let model
  try {
    model = await tfl.models.modelFromJSON({ modelTopology: json.modelTopology })
  } catch {
    return null
  }
  const spec = (t) => ({ name: t.sourceLayer.name, dtype: t.dtype, shape: t.shape.map((d) => d ?? -1) })
  try {
    return { inputs: model.inputs.map(spec), outputs: model.outputs.map(spec) }
  } finally {
    model.dispose()
  }
}

const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`

/** Every file under a folder, as paths relative to it with '/' separators. */
function filesUnder(dir) {
  return readdirSync(dir, { recursive: true })
    .filter((path) => statSync(join(dir, path)).isFile())
    .map((path) => path.split(sep).join('/'))
    .sort()
}

const readJson = (path) => {
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch {
    return undefined
  }
}
const isModelJson = (json) => json?.modelTopology != null && Array.isArray(json.weightsManifest)

/** The *.json files in a folder that are TF.js models (packages often name them after the model). */
export const modelJsonFiles = (dir) => readdirSync(dir).filter((f) => f.endsWith('.json') && isModelJson(readJson(join(dir, f))))

/** Why a version folder has no model.json, and what to do. */
function missingModelFile(dir) {
  const candidates = modelJsonFiles(dir)
  if (candidates.length === 1) {
    const from = join(dir, candidates[0])
    return `no ${MODEL_FILE}; the model file is ${candidates[0]}: rename it (mv ${relative('.', from)} ${relative('.', join(dir, MODEL_FILE))}); its weight paths stay valid`
  }
  if (candidates.length > 1) return `no ${MODEL_FILE}, and several model files (${candidates.join(', ')}): put each model in its own <name>/<version>/ folder as ${MODEL_FILE}`
  return `no ${MODEL_FILE} (the model file of a TF.js layers or graph model, with its weight shards beside it)`
}

async function indexVersion(dir) {
  if (!existsSync(join(dir, MODEL_FILE))) throw new Error(missingModelFile(dir))
  const json = readJson(join(dir, MODEL_FILE))
  if (json === undefined) throw new Error(`${MODEL_FILE} is not valid JSON`)
  if (!isModelJson(json)) throw new Error(`${MODEL_FILE} has no modelTopology or weightsManifest: it is not a TF.js model`)
  const files = [{ path: MODEL_FILE, bytes: statSync(join(dir, MODEL_FILE)).size }]
  for (const [i, group] of json.weightsManifest.entries()) {
    const shards = group.paths.map((path) => {
      const size = statSync(join(dir, path), { throwIfNoEntry: false })?.size
      if (size === undefined) throw new Error(`weight shard ${path} is missing`)
      return { path, bytes: size }
    })
    // The same count the Worker makes when it loads (src/repository/weights.ts); per group, to name the shards.
    const expected = manifestBytes(group.weights)
    const actual = shards.reduce((n, f) => n + f.bytes, 0)
    if (expected !== undefined && actual !== expected) {
      throw new Error(`weight group ${i + 1} (${group.paths.join(', ')}) holds ${actual} bytes but ${MODEL_FILE} describes ${expected}: a shard is truncated or from another model`)
    }
    files.push(...shards)
  }
  const format = json.format === 'graph-model' || Array.isArray(json.modelTopology.node) ? 'graph-model' : 'layers-model'
  return {
    format,
    files,
    weightBytes: files.slice(1).reduce((n, f) => n + f.bytes, 0),
    totalBytes: files.reduce((n, f) => n + f.bytes, 0),
    signature: await declaredSignature(json),
  }
}

/**
 * Scans an assets folder; returns the index, the problems it skipped (one line each), and the files
 * over MAX_ASSET_BYTES. `keepInvalidConfig` names models whose config.json is indexed unchecked
 * (the tests keep deliberately broken ones to test the Worker's own check).
 */
export async function buildIndex(root, { keepInvalidConfig = [] } = {}) {
  const models = {}
  const skipped = []
  const oversized = filesUnder(root)
    .filter((path) => path !== INDEX_FILE)
    .map((path) => ({ path, bytes: statSync(join(root, path)).size }))
    .filter((f) => f.bytes > MAX_ASSET_BYTES)
  const reported = new Set()
  for (const name of readdirSync(root).sort()) {
    const modelDir = join(root, name)
    if (!isDir(modelDir)) continue
    // Folders starting with '_' are the Worker's own (_ui: the try-it and docs pages), never models.
    if (name.startsWith('_')) continue
    if (!MODEL_NAME.test(name)) {
      skipped.push(`${name}: not a valid model name (letters, digits, '_', '.', '-'; starting with a letter or digit)`)
      continue
    }
    const versions = {}
    for (const version of readdirSync(modelDir)) {
      const versionDir = join(modelDir, version)
      if (!isDir(versionDir)) continue
      if (!VERSION.test(version)) {
        skipped.push(`${name}/${version}: a version folder must be a positive integer`)
        continue
      }
      const big = oversized.filter((f) => f.path.startsWith(`${name}/${version}/`))
      if (big.length > 0) {
        for (const f of big) reported.add(f.path)
        const list = big.map((f) => `${f.path.slice(name.length + version.length + 2)} is ${mib(f.bytes)}`).join(', ')
        skipped.push(`${name}/${version}: ${list}, over the 25 MiB a static-asset file may be: npm run reshard -- ${relative('.', versionDir)}`)
        continue
      }
      try {
        versions[version] = await indexVersion(versionDir)
      } catch (error) {
        skipped.push(`${name}/${version}: ${error.message}`)
      }
    }
    const numbers = Object.keys(versions).map(Number).sort((a, b) => a - b)
    if (numbers.length === 0) continue
    models[name] = { latest: numbers.at(-1), versions }
    // An optional config.json beside the versions, checked by the Worker's own schema.
    const configPath = join(modelDir, 'config.json')
    if (existsSync(configPath)) {
      let config
      try {
        config = JSON.parse(readFileSync(configPath, 'utf8'))
      } catch (error) {
        skipped.push(`${name}: config.json is not valid JSON: ${error.message}`)
        delete models[name]
        continue
      }
      const checked = checkModelConfig(config)
      if (!checked.ok && !keepInvalidConfig.includes(name)) {
        skipped.push(`${name}: config.json is invalid: ${checked.message}`)
        delete models[name]
        continue
      }
      const detect = checked.ok ? detectMisfit(modelDir, checked.config, versions) : undefined
      if (detect) {
        skipped.push(`${name}: config.json detect does not fit the model: ${detect}`)
        delete models[name]
        continue
      }
      models[name].config = config
    }
  }
  for (const f of oversized.filter((f) => !reported.has(f.path))) {
    skipped.push(`${f.path}: ${mib(f.bytes)}, over the 25 MiB a static-asset file may be; left out of the assets`)
  }
  return { index: { models }, skipped, oversized: oversized.map((f) => f.path) }
}

/**
 * Why a model's `detect` block does not fit its versions' outputs or its labels (the Worker's own
 * check, src/repository/detect-layout.ts), or undefined when it fits or there is no block. Outputs a
 * graph model does not declare are checked by the Worker when it loads the model.
 */
function detectMisfit(modelDir, config, versions) {
  if (!config.detect) return undefined
  let labels = config.labels
  if (typeof labels === 'string') {
    const path = join(modelDir, labels)
    if (!existsSync(path)) return `labels names the file '${labels}', which is not beside config.json`
    labels = labelLines(readFileSync(path, 'utf8'))
  }
  for (const [version, entry] of Object.entries(versions)) {
    const problems = detectProblems(config.detect, entry.signature?.outputs ?? null, labels.length)
    if (problems.length > 0) return `version ${version}: ${problems.join('; ')}`
  }
  return undefined
}

/** Writes `text` to `path` only if it differs, so a watcher on the folder is not set off for nothing. */
function writeIfChanged(path, text) {
  if (!existsSync(path) || readFileSync(path, 'utf8') !== text) writeFileSync(path, text)
}

/**
 * Keeps build-index's block of <root>/.assetsignore listing the oversized files, so wrangler leaves
 * them out instead of refusing to start; lines outside the block are the user's and stay.
 */
export function writeAssetsIgnore(root, oversized) {
  const path = join(root, ASSETS_IGNORE)
  const old = existsSync(path) ? readFileSync(path, 'utf8') : ''
  const begin = old.indexOf(IGNORE_BEGIN)
  const end = old.indexOf(`${IGNORE_END}\n`, begin)
  const own = begin >= 0 && end >= 0 ? old.slice(0, begin) + old.slice(end + IGNORE_END.length + 1) : old
  const block = oversized.length > 0 ? `${IGNORE_BEGIN}\n${oversized.map((p) => `/${p}`).join('\n')}\n${IGNORE_END}\n` : ''
  const text = own + block
  if (text === '') {
    if (existsSync(path)) rmSync(path)
  } else {
    writeIfChanged(path, text)
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = resolve(process.env.MODEL_ASSETS_DIR ?? 'model-assets')
  const { index, skipped, oversized } = await buildIndex(root)
  for (const problem of skipped) console.warn(`[build-index] skipped ${problem}`)
  const path = join(root, INDEX_FILE)
  // Rewrite only on change, so a watcher on the assets folder is not set off by the index itself.
  writeIfChanged(path, `${JSON.stringify(index, null, 2)}\n`)
  writeAssetsIgnore(root, oversized)
  const summary = Object.entries(index.models).map(([name, m]) => `${name} v${Object.keys(m.versions).join(',v')}`)
  console.log(`[build-index] ${path}: ${summary.join('; ') || 'no models'}`)
}
