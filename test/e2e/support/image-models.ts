/**
 * The image models of the images end-to-end tests, served by the shared fixture server
 * (test/e2e/support/fixture-repo.ts): image classifiers nobody on this project trained (@vladmandic/human's emotion
 * model, grayscale 64×64, and its liveness model, RGB 32×32) with config.json as a user would write
 * it, and `pixels`, a model whose output is its input, so a test sees the exact tensor the Worker made.
 * Photos: scikit-image's sample data (chelsea and camera CC0, rocket public domain).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import * as tfl from '@tensorflow/tfjs-layers'
import { ROOT } from '../../../scripts/tools/launch.mjs'
import { addPackagedModel } from './models'

export const PHOTOS = join(ROOT, 'test/fixtures/models/_images')
export const HUMAN = join(ROOT, 'node_modules/@vladmandic/human/models')

export interface Image {
  size: [number, number]
  channels: 1 | 3
  range: [number, number]
  mean?: number[]
  std?: number[]
  fit?: 'stretch' | 'center-crop'
}

export const LIVENESS_LABELS = 'live\nspoof\n'

/** The models served, with config.json as a user would write it. */
export const MODELS = {
  // Human's emotion model: resizeBilinear, tf.image.rgbToGrayscale's weights, then (v − 0.5)·2 (src/gear/emotion.ts).
  'human-emotion': {
    source: 'emotion.json',
    config: {
      inputs: { 'input_1:0': { image: { size: [64, 64], channels: 1, range: [-1, 1] } } },
      labels: ['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral'],
      classify: { top_k: 7, activation: 'none' },
    },
  },
  // Human's liveness model: RGB in [0, 1]; here center-cropped; two scores, the first Human's `live`.
  'human-liveness': {
    source: 'liveness.json',
    config: {
      inputs: { conv2d_1_input: { image: { size: [32, 32], channels: 3, range: [0, 1], fit: 'center-crop' } } },
      labels: 'labels.txt',
      classify: { top_k: 2, activation: 'softmax' },
    },
  },
} as const

/** The tensor comparison: RGB 64×64 in [0, 1], normalized with ImageNet's mean and std. */
export const PIXELS: Image = {
  size: [64, 64],
  channels: 3,
  range: [0, 1],
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
}

/** Writes the image models into the repository `repo`: the two human models, the labels file, and `pixels`. */
export async function addImageModels(repo: string): Promise<void> {
  for (const [name, model] of Object.entries(MODELS)) {
    addPackagedModel(repo, name, join(HUMAN, model.source))
    writeFileSync(join(repo, name, 'config.json'), JSON.stringify(model.config))
  }
  writeFileSync(join(repo, 'human-liveness', 'labels.txt'), LIVENESS_LABELS)
  const input = tfl.input({ shape: [...PIXELS.size, PIXELS.channels], name: 'image' })
  const identity = tfl.model({
    inputs: input,
    outputs: tfl.layers.flatten({ name: 'flat' }).apply(input) as tfl.SymbolicTensor,
  })
  await identity.save(
    tf.io.withSaveHandler(async (a) => {
      mkdirSync(join(repo, 'pixels', '1'), { recursive: true })
      writeFileSync(
        join(repo, 'pixels', '1', 'model.json'),
        JSON.stringify({
          modelTopology: a.modelTopology,
          format: 'layers-model',
          weightsManifest: [{ paths: [], weights: [] }],
        }),
      )
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
    }),
  )
  identity.dispose()
  writeFileSync(join(repo, 'pixels', 'config.json'), JSON.stringify({ inputs: { image: { image: PIXELS } } }))
}
