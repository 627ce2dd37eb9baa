#!/usr/bin/env node
/**
 * Builds the benchmarks' image model: a MobileNet-v1-style CNN (width 0.75) on 128×128×3 images,
 * depthwise-separable convolutions, softmax over 10 classes, ~1.8 M parameters, with seeded random
 * weights (nothing is trained: it exists to cost what a real image classifier costs). Written in
 * the TF.js layers format — model.json plus weight shards of at most 4 MB, as
 * `tensorflowjs_converter` shards them — to bench/models/mobilenet-ish/1/ (git-ignored; never into
 * model-assets/, which is deployed).
 *
 *   input  `image`  [null, 128, 128, 3] float32 in [0, 1]
 *   output `probabilities` [null, 10] softmax
 *
 * Usage: `npm run build:bench-model` (skips the build if the model is there; `--force` rebuilds),
 * `node scripts/dev/build-image-model.mjs [--force] [--out DIR]`. Two builds write identical files.
 */
import { existsSync } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import * as tfl from '@tensorflow/tfjs-layers'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const IMAGE_MODEL = 'mobilenet-ish'
export const IMAGE_MODEL_DIR = join(ROOT, 'bench', 'models', IMAGE_MODEL, '1')
export const IMAGE_SIZE = 128
export const CLASSES = 10
const ALPHA = 0.75
const SHARD_BYTES = 4 * 1024 * 1024
const SEED = 20240601

/** MobileNet v1's (pointwise filters, stride) after the stem, scaled by ALPHA. */
const BLOCKS = [
  [64, 1],
  [128, 2],
  [128, 1],
  [256, 2],
  [256, 1],
  [512, 2],
  [512, 1],
  [512, 1],
  [512, 1],
  [512, 1],
  [512, 1],
  [1024, 2],
  [1024, 1],
]

function buildModel() {
  let seed = SEED
  const init = () => tfl.initializers.heNormal({ seed: seed++ })
  const batchNorm = (name) => tfl.layers.batchNormalization({ name, momentum: 0.99, epsilon: 1e-3 })
  const relu6 = (name) => tfl.layers.reLU({ name, maxValue: 6 })

  const input = tfl.input({ name: 'image', shape: [IMAGE_SIZE, IMAGE_SIZE, 3] })
  let x = tfl.layers
    .conv2d({
      name: 'stem_conv',
      filters: Math.round(32 * ALPHA),
      kernelSize: 3,
      strides: 2,
      padding: 'same',
      useBias: false,
      kernelInitializer: init(),
    })
    .apply(input)
  x = relu6('stem_relu').apply(batchNorm('stem_bn').apply(x))
  BLOCKS.forEach(([filters, strides], i) => {
    const b = `block${i + 1}`
    x = tfl.layers
      .depthwiseConv2d({
        name: `${b}_dw`,
        kernelSize: 3,
        strides,
        padding: 'same',
        useBias: false,
        depthwiseInitializer: init(),
      })
      .apply(x)
    x = relu6(`${b}_dw_relu`).apply(batchNorm(`${b}_dw_bn`).apply(x))
    x = tfl.layers
      .conv2d({
        name: `${b}_pw`,
        filters: Math.round(filters * ALPHA),
        kernelSize: 1,
        padding: 'same',
        useBias: false,
        kernelInitializer: init(),
      })
      .apply(x)
    x = relu6(`${b}_pw_relu`).apply(batchNorm(`${b}_pw_bn`).apply(x))
  })
  x = tfl.layers.globalAveragePooling2d({ name: 'pool' }).apply(x)
  const output = tfl.layers
    .dense({
      name: 'probabilities',
      units: CLASSES,
      activation: 'softmax',
      kernelInitializer: tfl.initializers.glorotUniform({ seed: seed++ }),
    })
    .apply(x)
  return tfl.model({ name: IMAGE_MODEL, inputs: input, outputs: output })
}

/** Writes model.json and its ≤ 4 MB shards into an emptied `dir`; returns what was written. */
async function save(model, dir) {
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  let written
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData))
      const count = Math.max(1, Math.ceil(weights.byteLength / SHARD_BYTES))
      const paths = Array.from({ length: count }, (_, i) => `group1-shard${i + 1}of${count}.bin`)
      for (const [i, path] of paths.entries()) {
        await writeFile(join(dir, path), weights.subarray(i * SHARD_BYTES, (i + 1) * SHARD_BYTES))
      }
      const modelJSON = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: null,
        weightsManifest: [{ paths, weights: artifacts.weightSpecs }],
      }
      await writeFile(join(dir, 'model.json'), JSON.stringify(modelJSON))
      written = { shards: paths, weightBytes: weights.byteLength }
      return {
        modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: weights.byteLength },
      }
    }),
  )
  return written
}

/**
 * Builds the model into `dir` unless a model.json is there already (or `force`).
 * Returns `{ dir, built, params?, weightBytes?, shards? }`.
 */
export async function buildImageModel({ dir = IMAGE_MODEL_DIR, force = false, quiet = false } = {}) {
  if (!force && existsSync(join(dir, 'model.json'))) return { dir, built: false }
  const say = quiet ? () => {} : (line) => console.log(`[build-image-model] ${line}`)
  await tf.setBackend('cpu')
  const started = Date.now()
  const model = buildModel()
  const params = model.countParams()
  say(`${IMAGE_MODEL}: ${model.layers.length} layers, ${params.toLocaleString('en-US')} parameters`)
  const { shards, weightBytes } = await save(model, dir)
  model.dispose()
  say(
    `wrote ${dir}: model.json + ${shards.length} shard(s), ${(weightBytes / 2 ** 20).toFixed(2)} MiB of weights, in ${Date.now() - started} ms`,
  )
  return { dir, built: true, params, weightBytes, shards }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2)
  const out = args.indexOf('--out')
  await buildImageModel({ force: args.includes('--force'), dir: out >= 0 ? args[out + 1] : IMAGE_MODEL_DIR }).then(
    (r) => {
      if (!r.built) console.log(`[build-image-model] ${r.dir}/model.json exists; --force rebuilds it`)
    },
  )
}
