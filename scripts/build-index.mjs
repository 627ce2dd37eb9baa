#!/usr/bin/env node
// Writes <assets>/_index.json: every model, version, format, declared signature and byte size
// in the repository. Static assets cannot be listed at run time, so the Worker reads this.
// Runs as wrangler's [build] command, so `wrangler dev` and `wrangler deploy` both refresh it.
//
// Layout (TF Serving's): <assets>/<name>/<version>/model.json plus weight shards,
// with <version> a positive integer, and optionally <assets>/<name>/config.json. The assets folder is MODEL_ASSETS_DIR, else ./model-assets.
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import * as tfl from '@tensorflow/tfjs-layers'

export const INDEX_FILE = '_index.json'
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

async function indexVersion(dir) {
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'))
  if (json.modelTopology == null || !Array.isArray(json.weightsManifest)) {
    throw new Error('model.json has no modelTopology or weightsManifest')
  }
  const shards = json.weightsManifest.flatMap((group) => group.paths)
  const files = ['model.json', ...shards].map((path) => {
    const size = statSync(join(dir, path), { throwIfNoEntry: false })?.size
    if (size === undefined) throw new Error(`weight shard ${path} is missing`)
    return { path, bytes: size }
  })
  const format = json.format === 'graph-model' || Array.isArray(json.modelTopology.node) ? 'graph-model' : 'layers-model'
  return {
    format,
    files,
    weightBytes: files.slice(1).reduce((n, f) => n + f.bytes, 0),
    totalBytes: files.reduce((n, f) => n + f.bytes, 0),
    signature: await declaredSignature(json),
  }
}

/** Scans an assets folder; returns the index and the problems it skipped. */
export async function buildIndex(root) {
  const models = {}
  const skipped = []
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
      try {
        versions[version] = await indexVersion(versionDir)
      } catch (error) {
        skipped.push(`${name}/${version}: ${error.message}`)
      }
    }
    const numbers = Object.keys(versions).map(Number).sort((a, b) => a - b)
    if (numbers.length === 0) continue
    models[name] = { latest: numbers.at(-1), versions }
    // An optional config.json beside the versions; the Worker checks its fields when it serves.
    const configPath = join(modelDir, 'config.json')
    if (existsSync(configPath)) {
      try {
        models[name].config = JSON.parse(readFileSync(configPath, 'utf8'))
      } catch (error) {
        skipped.push(`${name}/config.json: ${error.message}`)
        delete models[name]
      }
    }
  }
  return { index: { models }, skipped }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = resolve(process.env.MODEL_ASSETS_DIR ?? 'model-assets')
  const { index, skipped } = await buildIndex(root)
  for (const problem of skipped) console.warn(`[build-index] skipped ${problem}`)
  const path = join(root, INDEX_FILE)
  const text = `${JSON.stringify(index, null, 2)}\n`
  // Rewrite only on change, so a watcher on the assets folder is not set off by the index itself.
  if (!existsSync(path) || readFileSync(path, 'utf8') !== text) writeFileSync(path, text)
  const summary = Object.entries(index.models).map(([name, m]) => `${name} v${Object.keys(m.versions).join(',v')}`)
  console.log(`[build-index] ${path}: ${summary.join('; ') || 'no models'}`)
}
