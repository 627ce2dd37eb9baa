// A model folder's model.json and shards as tf.io.ModelArtifacts, as a browser or tfjs-node reads them:
// for the memory probe (probe.mjs) and the tests that compare warmserve with tf.js in Node.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * @param {string} dir the folder holding the model's JSON and its shards
 * @param {string} [file] the model's JSON, `model.json` in a model folder (a package may name it otherwise)
 * @returns {import('@tensorflow/tfjs-core').io.ModelArtifacts}
 */
export function artifactsOf(dir, file = 'model.json') {
  const json = JSON.parse(readFileSync(join(dir, file), 'utf8'))
  const specs = []
  const buffers = []
  for (const group of json.weightsManifest) {
    specs.push(...group.weights)
    for (const path of group.paths) buffers.push(readFileSync(join(dir, path)))
  }
  const data = Buffer.concat(buffers)
  return {
    modelTopology: json.modelTopology,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
    modelInitializer: json.modelInitializer,
    weightSpecs: specs,
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
  }
}
