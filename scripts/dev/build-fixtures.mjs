#!/usr/bin/env node
// Builds the test fixture models into test/fixtures/models/<name>/1/, as tensorflowjs_converter
// and tfjs-layers lay them out. Deterministic: the same bytes on every run.
//
//   pair       graph model, signature block whose keys differ from its tensor names:
//              inputs  features float32 [-1, 3] (x:0), multiplier int32 [-1, 1] (k:0)
//              outputs scores   float32 [-1, 2] = (x·W + b) * k,  shifted int32 [-1, 1] = k + 1
//   pair-nosig the same graph without a signature block: served by placeholders and output nodes
//   positives  graph model with a dynamic-shape op (Where), so it only runs through executeAsync:
//              input x float32 [-1, -1] → indices int32 [-1, 2] of the positive entries
//   pair-configured, pair-badconfig, pair-typo
//              the pair graph with a config.json: limits and defaults that work, a default
//              output the model lacks (a server fault), and an unknown field (refused)
//   flower     layers model with two named inputs and two named outputs:
//              sepal [-1, 2], petal [-1, 2] → species [-1, 3] (softmax), size [-1, 1]
//   pair-batched
//              the pair graph with adaptive batching on (config.json `batching`)
//   rowsum-batched
//              graph model with a dynamic non-batch dimension, batched:
//              input x float32 [-1, -1] → sums float32 [-1] (each row's sum)
//   colsum-batched
//              graph model whose output is not per row, batched (it cannot be split):
//              input x float32 [-1, 3] → total float32 [1, 3] (the sum over rows)
//   pixels     layers model that returns its input flattened: image float32 [-1, 8, 8, 3] → flat
//              [-1, 192], with an image transform (config.json `inputs`), so a test sees the exact
//              tensor an image becomes
//   pixels-pair two image inputs, left and right [-1, 8, 8, 3] → flat [-1, 384]: a request's
//              images counted together across inputs (MAX_REQUEST_IMAGE_PIXELS)
//   digits-labels-file, digits-badlabels
//              copies of model-assets/digits/1 with labels in a file beside config.json, and with
//              9 labels for its 10 classes (refused at load)
//   digits-batched
//              a byte-for-byte copy of model-assets/digits/1 with batching on, for batched
//              against unbatched comparisons (tests cannot add files to model-assets/)
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import * as tfl from '@tensorflow/tfjs-layers'

const ROOT = 'test/fixtures/models'
const SHARD = 'group1-shard1of1.bin'

function write(name, modelJSON, weightData, config) {
  const dir = join(ROOT, name, '1')
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'model.json'), `${JSON.stringify(modelJSON, null, 1)}\n`)
  writeFileSync(join(dir, SHARD), new Uint8Array(weightData))
  const configPath = join(ROOT, name, 'config.json')
  rmSync(configPath, { force: true })
  if (config) writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`)
  console.log(`[fixtures] ${dir}: ${weightData.byteLength} weight bytes`)
}

const shape = (dims) => ({ dim: dims.map((size) => ({ size: String(size) })) })
const placeholder = (name, type, dims) => ({
  name,
  op: 'Placeholder',
  attr: { dtype: { type }, shape: { shape: shape(dims) } },
})
const constant = (name, type, dims) => ({
  name,
  op: 'Const',
  attr: { dtype: { type }, value: { tensor: { dtype: type, tensorShape: shape(dims) } } },
})
const op = (name, kind, input, attr = {}) => ({ name, op: kind, input, attr })
const T = (type) => ({ T: { type } })

function graphJSON(nodes, weights, signature) {
  return {
    format: 'graph-model',
    generatedBy: 'warmserve scripts/dev/build-fixtures.mjs',
    convertedBy: 'warmserve scripts/dev/build-fixtures.mjs',
    ...(signature ? { signature } : {}),
    modelTopology: { node: nodes, library: {}, versions: { producer: 1 } },
    weightsManifest: [{ paths: [SHARD], weights }],
  }
}

function pair(withSignature) {
  const W = [0.5, -1, 2, 0.25, -0.75, 1.5] // [3, 2]
  const B = [0.1, -0.2]
  const nodes = [
    placeholder('x', 'DT_FLOAT', [-1, 3]),
    placeholder('k', 'DT_INT32', [-1, 1]),
    constant('w', 'DT_FLOAT', [3, 2]),
    constant('b', 'DT_FLOAT', [2]),
    constant('one', 'DT_INT32', []),
    op('MatMul', 'MatMul', ['x', 'w'], { ...T('DT_FLOAT'), transpose_a: { b: false }, transpose_b: { b: false } }),
    op('BiasAdd', 'BiasAdd', ['MatMul', 'b'], T('DT_FLOAT')),
    op('Cast', 'Cast', ['k'], { SrcT: { type: 'DT_INT32' }, DstT: { type: 'DT_FLOAT' } }),
    op('Mul', 'Mul', ['BiasAdd', 'Cast'], T('DT_FLOAT')),
    op('AddV2', 'AddV2', ['k', 'one'], T('DT_INT32')),
    op('Identity', 'Identity', ['Mul'], T('DT_FLOAT')),
    op('Identity_1', 'Identity', ['AddV2'], T('DT_INT32')),
  ]
  const tensor = (name, dtype, dims) => ({ name, dtype, tensorShape: shape(dims) })
  const signature = {
    inputs: { features: tensor('x:0', 'DT_FLOAT', [-1, 3]), multiplier: tensor('k:0', 'DT_INT32', [-1, 1]) },
    outputs: {
      scores: tensor('Identity:0', 'DT_FLOAT', [-1, 2]),
      shifted: tensor('Identity_1:0', 'DT_INT32', [-1, 1]),
    },
  }
  const weights = [
    { name: 'w', shape: [3, 2], dtype: 'float32' },
    { name: 'b', shape: [2], dtype: 'float32' },
    { name: 'one', shape: [], dtype: 'int32' },
  ]
  const data = new Uint8Array(4 * 9)
  new Float32Array(data.buffer, 0, 8).set([...W, ...B])
  new Int32Array(data.buffer, 32, 1).set([1])
  return [graphJSON(nodes, weights, withSignature ? signature : undefined), data.buffer]
}

function positives() {
  const nodes = [
    placeholder('x', 'DT_FLOAT', [-1, -1]),
    constant('zero', 'DT_FLOAT', []),
    op('Greater', 'Greater', ['x', 'zero'], T('DT_FLOAT')),
    op('Where', 'Where', ['Greater'], T('DT_BOOL')),
    op('Cast', 'Cast', ['Where'], { SrcT: { type: 'DT_INT64' }, DstT: { type: 'DT_INT32' } }),
    op('indices', 'Identity', ['Cast'], T('DT_INT32')),
  ]
  return [graphJSON(nodes, [{ name: 'zero', shape: [], dtype: 'float32' }]), new Float32Array([0]).buffer]
}

/** x [-1, width] summed along `axis`: axis 1 gives one sum per row, axis 0 one row of totals. */
function sum(width, axis, keepDims) {
  const nodes = [
    placeholder('x', 'DT_FLOAT', [-1, width]),
    constant('axis', 'DT_INT32', []),
    op('Sum', 'Sum', ['x', 'axis'], { ...T('DT_FLOAT'), Tidx: { type: 'DT_INT32' }, keep_dims: { b: keepDims } }),
    op('total', 'Identity', ['Sum'], T('DT_FLOAT')),
  ]
  return [graphJSON(nodes, [{ name: 'axis', shape: [], dtype: 'int32' }]), new Int32Array([axis]).buffer]
}

/** Copies a bundled model version into the fixtures, with a config.json beside it. */
function copyBundled(from, name, config) {
  const dir = join(ROOT, name, '1')
  rmSync(join(ROOT, name), { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  for (const file of readdirSync(from).sort()) copyFileSync(join(from, file), join(dir, file))
  writeFileSync(join(ROOT, name, 'config.json'), `${JSON.stringify(config, null, 2)}\n`)
  console.log(`[fixtures] ${dir}: a copy of ${from}`)
}

/** A model whose output is its input, flattened: the tensor an image transform made, as JSON. */
async function pixels() {
  const image = tfl.input({ shape: [8, 8, 3], name: 'image' })
  const flat = tfl.layers.flatten({ name: 'flat' }).apply(image)
  return saveLayers(tfl.model({ inputs: image, outputs: flat, name: 'pixels' }))
}

/** Two image inputs, flattened side by side. */
async function pixelsPair() {
  const left = tfl.input({ shape: [8, 8, 3], name: 'left' })
  const right = tfl.input({ shape: [8, 8, 3], name: 'right' })
  const flat = tfl.layers
    .concatenate({ name: 'flat' })
    .apply([tfl.layers.flatten().apply(left), tfl.layers.flatten().apply(right)])
  return saveLayers(tfl.model({ inputs: [left, right], outputs: flat, name: 'pixels_pair' }))
}

async function saveLayers(model) {
  let out
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      out = [
        {
          modelTopology: a.modelTopology,
          format: 'layers-model',
          generatedBy: a.generatedBy,
          convertedBy: null,
          weightsManifest: [{ paths: [SHARD], weights: a.weightSpecs }],
        },
        a.weightData ?? new ArrayBuffer(0),
      ]
      return { modelArtifactsInfo: { dateSaved: new Date(0), modelTopologyType: 'JSON' } }
    }),
  )
  model.dispose()
  return out
}

async function flower() {
  const seeded = (seed) => tfl.initializers.glorotUniform({ seed })
  const sepal = tfl.input({ shape: [2], name: 'sepal' })
  const petal = tfl.input({ shape: [2], name: 'petal' })
  const joined = tfl.layers.concatenate({ name: 'joined' }).apply([sepal, petal])
  const hidden = tfl.layers
    .dense({ units: 8, activation: 'tanh', kernelInitializer: seeded(7), name: 'hidden' })
    .apply(joined)
  const species = tfl.layers
    .dense({ units: 3, activation: 'softmax', kernelInitializer: seeded(8), name: 'species' })
    .apply(hidden)
  const size = tfl.layers.dense({ units: 1, kernelInitializer: seeded(9), name: 'size' }).apply(hidden)
  return saveLayers(tfl.model({ inputs: [sepal, petal], outputs: [species, size], name: 'flower' }))
}

await tf.setBackend('cpu')
write('pair', ...pair(true))
write('pair-nosig', ...pair(false))
write('pair-configured', ...pair(true), {
  description: 'The pair graph with limits: batches of 2 at most, multipliers in [-5, 5], scores by default.',
  max_batch_size: 2,
  default_outputs: ['scores'],
  input_limits: { multiplier: { min: -5, max: 5 } },
})
write('pair-badconfig', ...pair(true), { default_outputs: ['logits'] })
write('pair-typo', ...pair(true), { max_batch: 2 })
write('positives', ...positives())
write('flower', ...(await flower()))
// Batching: a window of 5 ms gathers what arrives together without holding a lone request long.
const BATCHING = { max_batch_size: 8, max_queue_delay_ms: 5 }
write('pair-batched', ...pair(true), { description: 'The pair graph with adaptive batching on.', batching: BATCHING })
write('rowsum-batched', ...sum(-1, 1, false), { batching: BATCHING })
write('colsum-batched', ...sum(3, 0, true), { batching: BATCHING })
write('pixels', ...(await pixels()), { inputs: { image: { image: { size: [8, 8], channels: 3, range: [0, 255] } } } })
const PIXELS_IMAGE = { image: { size: [8, 8], channels: 3, range: [0, 255] } }
write('pixels-pair', ...(await pixelsPair()), { inputs: { left: PIXELS_IMAGE, right: PIXELS_IMAGE } })
const DIGITS_IMAGE = { image: { image: { size: [28, 28], channels: 1, range: [0, 1] } } }
copyBundled('model-assets/digits/1', 'digits-labels-file', { inputs: DIGITS_IMAGE, labels: 'labels.txt' })
writeFileSync(
  join(ROOT, 'digits-labels-file', 'labels.txt'),
  'zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n',
)
copyBundled('model-assets/digits/1', 'digits-badlabels', {
  inputs: DIGITS_IMAGE,
  labels: ['0', '1', '2', '3', '4', '5', '6', '7', '8'],
})
copyBundled('model-assets/digits/1', 'digits-batched', { batching: { max_batch_size: 32, max_queue_delay_ms: 5 } })
