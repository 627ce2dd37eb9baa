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
//
// Each version's memory is measured (scripts/build/memory/measure.mjs: the wasm heap it needs to load and
// run one row and four, cached by digest under node_modules/.cache) and written as its `memory`; a
// model that cannot fit an isolate's heap even alone fails the build, naming it with the figures.
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join, relative, resolve, sep } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import * as tfl from '@tensorflow/tfjs-layers'
import { checkModelConfig, labelLines } from '../../src/repository/model-config.ts'
import { detectProblems } from '../../src/repository/detect-layout.ts'
import { TextTokenizer } from '../../src/protocols/text/tokenizer.ts'
import { manifestBytes } from '../../src/repository/weights.ts'
import { isolateHeapBytes, measureVersion, refusal } from './memory/measure.mjs'

export const INDEX_FILE = '_index.json'
/** The one name the Worker reads a version's model from (src/repository/model-files.ts), as TF Serving's layout has it. */
export const MODEL_FILE = 'model.json'
/** Wrangler refuses to serve or upload a static-asset file larger than this (it says "Asset too large"). */
export const MAX_ASSET_BYTES = 25 * 1024 * 1024
const ASSETS_IGNORE = '.assetsignore'
const IGNORE_BEGIN =
  '# build-index: files over 25 MiB, left out of the assets (npm run reshard -- <version folder> splits them)'
const IGNORE_END = '# end build-index'
// Names become URL path segments; a leading letter or digit also keeps them clear of _index.json.
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
const VERSION = /^[1-9][0-9]{0,15}$/

const isDir = (path) => statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false

/** Inputs and outputs as model.json declares them; outputs of graphs without a signature are only known once built. */
export async function declaredSignature(json) {
  const topology = json.modelTopology ?? {}
  if (json.signature?.inputs) {
    const side = (group) =>
      Object.entries(group ?? {}).map(([name, info]) => ({
        name,
        // The graph's tensor, which TF Serving metadata shows: metadata is answered from the index.
        ...(info.name ? { tensorName: info.name } : {}),
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
        shape: node.attr?.shape?.shape?.unknownRank
          ? null
          : (node.attr?.shape?.shape?.dim ?? []).map((d) => Number(d.size ?? -1)),
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
export const modelJsonFiles = (dir) =>
  readdirSync(dir).filter((f) => f.endsWith('.json') && isModelJson(readJson(join(dir, f))))

/** Why a version folder has no model.json, and what to do. */
function missingModelFile(dir) {
  const candidates = modelJsonFiles(dir)
  if (candidates.length === 1) {
    const from = join(dir, candidates[0])
    return `no ${MODEL_FILE}; the model file is ${candidates[0]}: rename it (mv ${relative('.', from)} ${relative('.', join(dir, MODEL_FILE))}); its weight paths stay valid`
  }
  if (candidates.length > 1)
    return `no ${MODEL_FILE}, and several model files (${candidates.join(', ')}): put each model in its own <name>/<version>/ folder as ${MODEL_FILE}`
  return `no ${MODEL_FILE} (the model file of a TF.js layers or graph model, with its weight shards beside it)`
}

async function indexVersion(dir) {
  if (!existsSync(join(dir, MODEL_FILE))) throw new Error(missingModelFile(dir))
  const json = readJson(join(dir, MODEL_FILE))
  if (json === undefined) throw new Error(`${MODEL_FILE} is not valid JSON`)
  if (!isModelJson(json))
    throw new Error(`${MODEL_FILE} has no modelTopology or weightsManifest: it is not a TF.js model`)
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
      throw new Error(
        `weight group ${i + 1} (${group.paths.join(', ')}) holds ${actual} bytes but ${MODEL_FILE} describes ${expected}: a shard is truncated or from another model`,
      )
    }
    files.push(...shards)
  }
  const format =
    json.format === 'graph-model' || Array.isArray(json.modelTopology.node) ? 'graph-model' : 'layers-model'
  return {
    format,
    files,
    weightBytes: files.slice(1).reduce((n, f) => n + f.bytes, 0),
    totalBytes: files.reduce((n, f) => n + f.bytes, 0),
    signature: await declaredSignature(json),
  }
}

/** Dimensions a model leaves open, from its config's image inputs: `{ input: [-1, h, w, channels] }`. */
export function configuredShapes(config) {
  const shapes = {}
  for (const [name, transform] of Object.entries(config?.inputs ?? {})) {
    const image = transform?.image
    if (image) shapes[name] = [-1, image.size[0], image.size[1], image.channels]
  }
  return Object.keys(shapes).length > 0 ? shapes : undefined
}

/**
 * Measures each indexed version's memory (`memory` on the version, `backend.baseHeapBytes` on the
 * index). A version that cannot fit the isolate's heap even alone leaves the index and is returned
 * in `refused`; one that cannot be measured here (inputs whose size only a request tells) keeps no
 * figures, and the Worker measures it as it loads.
 */
async function measureModels(index, root, { capBytes = isolateHeapBytes(), only } = {}) {
  const refused = []
  const unmeasured = []
  const measuredNow = []
  for (const [name, model] of Object.entries(index.models)) {
    if (only !== undefined && name !== only) continue
    for (const [version, entry] of Object.entries(model.versions)) {
      let measured
      try {
        measured = await measureVersion(join(root, name, version), { shapes: configuredShapes(model.config) })
      } catch (error) {
        unmeasured.push(`${name}/${version}: ${error.message}`)
        continue
      }
      entry.memory = measured.memory
      if (!measured.cached) measuredNow.push(`${name}/${version}`)
      index.backend = { baseHeapBytes: measured.baseHeapBytes }
      const why = refusal(`${name}/${version}`, measured.memory, capBytes)
      if (why) {
        refused.push(why)
        delete model.versions[version]
      }
    }
    const numbers = Object.keys(model.versions)
      .map(Number)
      .sort((a, b) => a - b)
    if (numbers.length === 0) delete index.models[name]
    else model.latest = numbers.at(-1)
  }
  return { refused, unmeasured, measuredNow }
}

/**
 * The most token ids each input can take, from the embedding its ids index: a layers model's
 * Embedding layers fed by the input (`input_dim`), a graph model's Gather ops whose indices are the
 * input (or a cast of it) and whose params are a weight (its first dimension). Inputs not found
 * directly are left out: then nothing is checked for them.
 */
function embeddingSizes(json) {
  const sizes = new Map()
  const keep = (input, size) => sizes.set(input, Math.min(size, sizes.get(input) ?? Infinity))
  const topology = json.modelTopology ?? {}
  if (Array.isArray(topology.node)) {
    const strip = (ref) => ref.replace(/^\^/, '').replace(/:\d+$/, '')
    const nodes = new Map(topology.node.map((n) => [n.name, n]))
    const weights = new Map(json.weightsManifest.flatMap((g) => g.weights).map((w) => [w.name, w]))
    const source = (ref) => {
      let node = nodes.get(strip(ref))
      while (node && ['Cast', 'Identity'].includes(node.op) && node.input?.[0]) node = nodes.get(strip(node.input[0]))
      return node
    }
    for (const node of topology.node) {
      if (!['GatherV2', 'ResourceGather', 'Gather'].includes(node.op) || !node.input || node.input.length < 2) continue
      const indices = source(node.input[1])
      const params = weights.get(strip(node.input[0])) ?? weights.get(source(node.input[0])?.name)
      if (indices?.op === 'Placeholder' && params?.shape?.length === 2) keep(indices.name, params.shape[0])
    }
    return sizes
  }
  const config = topology.model_config?.config ?? topology.config ?? {}
  const layers = Array.isArray(config.layers) ? config.layers : []
  for (const layer of layers) {
    if (layer.class_name !== 'Embedding') continue
    const inbound = layer.inbound_nodes?.flat(3).find((x) => typeof x === 'string')
    const from = layers.find((l) => l.name === inbound || l.config?.name === inbound)
    // Sequential models have no inbound nodes: their first layer's input is the model's.
    const input =
      from?.class_name === 'InputLayer'
        ? (from.config?.name ?? from.name)
        : layers.indexOf(layer) <= 1
          ? layers[0]?.class_name === 'InputLayer'
            ? layers[0].config?.name
            : undefined
          : undefined
    if (input && typeof layer.config?.input_dim === 'number') keep(input, layer.config.input_dim)
  }
  return sizes
}

/**
 * Why a version's text inputs cannot be served, or undefined: each tokenizer named in config.json is
 * in the version's folder, is a tokenizer.json the Worker's library runs, and has no more token ids
 * than the embedding its input indexes.
 */
function textInputProblem(versionDir, config) {
  const json = readJson(join(versionDir, MODEL_FILE))
  const embeddings = json ? embeddingSizes(json) : new Map()
  for (const [input, transform] of Object.entries(config?.inputs ?? {})) {
    const file = transform.text?.tokenizer
    if (file === undefined) continue
    const path = join(versionDir, file)
    if (!existsSync(path)) return `input '${input}' is fed from ${file}, which is not in the version's folder`
    let tokenizer
    try {
      tokenizer = new TextTokenizer(JSON.parse(readFileSync(path, 'utf8')))
    } catch (error) {
      return `${file} is not a tokenizer.json this server can run: ${error.message}`
    }
    const size = embeddings.get(input)
    if (transform.text.field === 'ids' && size !== undefined && tokenizer.vocabSize > size) {
      return `${file} has ${tokenizer.vocabSize} token ids, but input '${input}' indexes an embedding of ${size}: ids past ${size - 1} would fail`
    }
  }
  return undefined
}

/**
 * Scans an assets folder; returns the index, the problems it skipped (one line each), and the files
 * over MAX_ASSET_BYTES. `keepInvalidConfig` names models whose config.json is indexed unchecked
 * (the tests keep deliberately broken ones to test the Worker's own check). With `measure`, each
 * version's memory is measured too (see measureModels): `refused` lists the versions too big for an
 * isolate, `unmeasured` those left to the Worker to measure, `measuredNow` those not found in the
 * cache; `only` measures one model's versions.
 */
export async function buildIndex(root, { keepInvalidConfig = [], measure = false, capBytes, only } = {}) {
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
        skipped.push(
          `${name}/${version}: ${list}, over the 25 MiB a static-asset file may be: npm run reshard -- ${relative('.', versionDir)}`,
        )
        continue
      }
      try {
        versions[version] = await indexVersion(versionDir)
      } catch (error) {
        skipped.push(`${name}/${version}: ${error.message}`)
      }
    }
    const numbers = Object.keys(versions)
      .map(Number)
      .sort((a, b) => a - b)
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
      if (checked.ok) {
        for (const version of Object.keys(models[name].versions)) {
          const problem = textInputProblem(join(modelDir, version), checked.config)
          if (problem === undefined) continue
          skipped.push(`${name}/${version}: ${problem}`)
          delete models[name].versions[version]
        }
        const left = Object.keys(models[name].versions)
          .map(Number)
          .sort((a, b) => a - b)
        if (left.length === 0) delete models[name]
        else models[name].latest = left.at(-1)
      }
    }
  }
  for (const f of oversized.filter((f) => !reported.has(f.path))) {
    skipped.push(`${f.path}: ${mib(f.bytes)}, over the 25 MiB a static-asset file may be; left out of the assets`)
  }
  const index = { models }
  const { refused, unmeasured, measuredNow } = measure
    ? await measureModels(index, root, { capBytes, only })
    : { refused: [], unmeasured: [], measuredNow: [] }
  return { index, skipped, oversized: oversized.map((f) => f.path), refused, unmeasured, measuredNow }
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
  const block =
    oversized.length > 0 ? `${IGNORE_BEGIN}\n${oversized.map((p) => `/${p}`).join('\n')}\n${IGNORE_END}\n` : ''
  const text = own + block
  if (text === '') {
    if (existsSync(path)) rmSync(path)
  } else {
    writeIfChanged(path, text)
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = resolve(process.env.MODEL_ASSETS_DIR ?? 'model-assets')
  const { index, skipped, oversized, refused, unmeasured, measuredNow } = await buildIndex(root, { measure: true })
  if (measuredNow.length > 0)
    console.log(
      `[build-index] measured the wasm heap of ${measuredNow.join(', ')} (kept, by digest, for the next builds)`,
    )
  for (const problem of skipped) console.warn(`[build-index] skipped ${problem}`)
  for (const problem of unmeasured)
    console.warn(`[build-index] not measured (the Worker measures it as it loads): ${problem}`)
  if (refused.length > 0) {
    // Refused before anyone calls it: no server starts and no deploy goes out with a model that cannot load.
    for (const problem of refused)
      console.error(
        `[build-index] refused ${problem}: remove it from ${relative('.', root) || '.'}, or serve a smaller model`,
      )
    process.exit(1)
  }
  const path = join(root, INDEX_FILE)
  // Rewrite only on change, so a watcher on the assets folder is not set off by the index itself.
  writeIfChanged(path, `${JSON.stringify(index, null, 2)}\n`)
  writeAssetsIgnore(root, oversized)
  const summary = Object.entries(index.models).map(([name, m]) => `${name} v${Object.keys(m.versions).join(',v')}`)
  console.log(`[build-index] ${path}: ${summary.join('; ') || 'no models'}`)
}
