// Brings a TF.js model from where a package ships it into a version folder of the repository
// (<name>/<version>/model.json plus its shards), for `npm run add-model` and `npm run zoo`.
//
// Sources: a folder holding one model JSON, a model JSON file (any name: packages often name it after
// the model), or a JS-packed model: a UMD module whose export is the model JSON, beside one UMD module
// per shard exporting its bytes as base64 — as nsfwjs ships its models (dist/models/<name>/model.min.js,
// group1-shard1of2.min.js, …), so that bundlers can import weights. A JS-packed module is evaluated in
// an empty context of its own (node:vm), with nothing but `module` and `exports` in it.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { runInNewContext } from 'node:vm'

const isModelJson = (json) =>
  json != null && typeof json === 'object' && json.modelTopology != null && Array.isArray(json.weightsManifest)

/** What a UMD/CommonJS module exports, evaluated with no globals but `module` and `exports`. */
export function umdExport(path) {
  const module = { exports: {} }
  runInNewContext(readFileSync(path, 'utf8'), { module, exports: module.exports }, { filename: path, timeout: 30_000 })
  return module.exports
}

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch {
    return undefined
  }
}

/**
 * Finds the model in `source`: `{ kind: 'json' | 'js', file, dir }`, or throws saying what is there.
 * A folder must hold exactly one model (a model JSON, or a JS-packed `model*.js`).
 */
export function locateModel(source) {
  if (!existsSync(source)) throw new Error(`${source} does not exist`)
  if (statSync(source).isFile()) {
    if (/\.[cm]?js$/.test(source)) return { kind: 'js', file: source, dir: dirname(source) }
    if (!isModelJson(readJson(source)))
      throw new Error(`${source} is not a TF.js model JSON (no modelTopology or weightsManifest)`)
    return { kind: 'json', file: source, dir: dirname(source) }
  }
  const names = readdirSync(source)
  const jsons = names.filter((f) => f.endsWith('.json') && isModelJson(readJson(join(source, f))))
  if (jsons.length === 1) return { kind: 'json', file: join(source, jsons[0]), dir: source }
  if (jsons.length > 1) throw new Error(`${source} holds several models (${jsons.join(', ')}): name one file`)
  const packed = names.filter((f) => /^model.*\.[cm]?js$/.test(f))
  if (packed.length === 1) return { kind: 'js', file: join(source, packed[0]), dir: source }
  throw new Error(
    `${source} holds no TF.js model: no model JSON (modelTopology and weightsManifest) and no JS-packed model*.js`,
  )
}

/** The shard file of a JS-packed model: `<path>.min.js` or `<path>.js` beside the model module. */
function packedShard(dir, path) {
  for (const candidate of [`${path}.min.js`, `${path}.js`, path]) {
    if (existsSync(join(dir, candidate)) && /\.[cm]?js$/.test(candidate)) return join(dir, candidate)
  }
  throw new Error(`shard ${path} of the JS-packed model is not in ${dir} (looked for ${path}.min.js and ${path}.js)`)
}

/**
 * Writes the model in `source` to `target` as model.json plus shards; returns the model JSON.
 * JS-packed shards become binary files named as the manifest names them, with `.bin` appended when
 * they have no extension (the manifest is rewritten to match).
 */
export function importModel(source, target) {
  const found = locateModel(source)
  mkdirSync(target, { recursive: true })
  if (found.kind === 'json') {
    const json = JSON.parse(readFileSync(found.file, 'utf8'))
    for (const path of json.weightsManifest.flatMap((g) => g.paths)) {
      const from = join(found.dir, path)
      if (!existsSync(from))
        throw new Error(`weight shard ${path} named by ${basename(found.file)} is missing from ${found.dir}`)
      mkdirSync(dirname(join(target, path)), { recursive: true })
      copyFileSync(from, join(target, path))
    }
    writeFileSync(join(target, 'model.json'), JSON.stringify(json))
    return json
  }
  const json = structuredClone(umdExport(found.file))
  if (!isModelJson(json))
    throw new Error(`${found.file} does not export a TF.js model JSON (no modelTopology or weightsManifest)`)
  for (const group of json.weightsManifest) {
    group.paths = group.paths.map((path) => {
      const base64 = umdExport(packedShard(found.dir, path))
      if (typeof base64 !== 'string')
        throw new Error(`shard ${path} of the JS-packed model does not export a base64 string`)
      const name = /\.[A-Za-z0-9]+$/.test(path) ? path : `${path}.bin`
      writeFileSync(join(target, name), Buffer.from(base64, 'base64'))
      return name
    })
  }
  writeFileSync(join(target, 'model.json'), JSON.stringify(json))
  return json
}
