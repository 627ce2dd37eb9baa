#!/usr/bin/env node
// Re-splits a TF.js model's weights (layers or graph model) into shards of at most --max-shard-mb
// MiB (4 by default, the converter's own size), in place: for a model converted with a larger
// --weight_shard_size_bytes, or a package that ships one big .bin, since a static-asset file may be
// at most 25 MiB. Weights and their order are unchanged, byte for byte; only the shard files and
// model.json's weightsManifest are rewritten. No Python: tf.js's own IO reads the model.
//
//   npm run reshard -- model-assets/my-model/1 [--max-shard-mb 4]
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { readCommandLine, readOrExit } from './command-line.mjs'
import * as tf from '@tensorflow/tfjs-core'
import { MAX_ASSET_BYTES, MODEL_FILE, modelJsonFiles } from '../build/build-index.mjs'

const MIB = 2 ** 20

/** The model file in a version folder: model.json, else the folder's one TF.js model *.json. */
export function modelFile(dir) {
  if (existsSync(join(dir, MODEL_FILE))) return MODEL_FILE
  const found = modelJsonFiles(dir)
  if (found.length !== 1)
    throw new Error(
      `${dir}: expected ${MODEL_FILE} or one TF.js model file, found ${found.length === 0 ? 'none' : found.join(', ')}`,
    )
  return found[0]
}

/**
 * Rewrites the model in `dir` with its weights in one group of shards of at most `maxShardBytes`.
 * Returns the model file's name and the new shard paths.
 */
export async function reshard(dir, { maxShardBytes = 4 * MIB } = {}) {
  if (!(maxShardBytes >= 1 && maxShardBytes <= MAX_ASSET_BYTES))
    throw new Error(`the shard size must be between 1 byte and 25 MiB, got ${maxShardBytes}`)
  const file = modelFile(dir)
  const json = JSON.parse(readFileSync(join(dir, file), 'utf8'))
  const oldShards = json.weightsManifest.flatMap((group) => group.paths)
  // tf.js reads the weights as it would to build the model: specs in manifest order, shards joined.
  const artifacts = await tf.io.getModelArtifactsForJSON(json, async (manifest) => [
    tf.io.getWeightSpecs(manifest),
    manifest.flatMap((group) =>
      group.paths.map((path) => {
        const bytes = readFileSync(join(dir, path))
        return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
      }),
    ),
  ])
  const weights = new tf.io.CompositeArrayBuffer(artifacts.weightData)
  const count = Math.max(1, Math.ceil(weights.byteLength / maxShardBytes))
  const shards = Array.from({ length: count }, (_, i) => ({
    path: `group1-shard${i + 1}of${count}.bin`,
    bytes: weights.slice(i * maxShardBytes, Math.min((i + 1) * maxShardBytes, weights.byteLength)),
  }))
  // Everything is in memory now: the old shards can go before the new ones (maybe of the same names) are written.
  for (const path of oldShards) rmSync(join(dir, path), { force: true })
  for (const shard of shards) writeFileSync(join(dir, shard.path), new Uint8Array(shard.bytes))
  const next = { ...json, weightsManifest: [{ paths: shards.map((s) => s.path), weights: artifacts.weightSpecs }] }
  writeFileSync(join(dir, file), JSON.stringify(next))
  return { file, shards: shards.map((s) => s.path), bytes: weights.byteLength }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const usage = 'usage: npm run reshard -- <model version folder> [--max-shard-mb 4]'
  const { values, positionals } = readOrExit(
    readCommandLine(
      process.argv.slice(2),
      { 'max-shard-mb': { type: 'string', default: '4' } },
      { allowPositionals: true },
    ),
    'reshard',
    usage,
  )
  if (positionals.length !== 1) {
    console.error(usage)
    process.exit(2)
  }
  const dir = positionals[0]
  const { file, shards, bytes } = await reshard(dir, {
    maxShardBytes: Math.floor(Number(values['max-shard-mb']) * MIB),
  })
  console.log(
    `[reshard] ${relative('.', join(dir, file))}: ${bytes} bytes of weights in ${shards.length} shard${shards.length === 1 ? '' : 's'} of at most ${values['max-shard-mb']} MiB`,
  )
  if (file !== MODEL_FILE)
    console.log(
      `[reshard] the Worker reads ${MODEL_FILE}: mv ${relative('.', join(dir, file))} ${relative('.', join(dir, MODEL_FILE))}`,
    )
}
