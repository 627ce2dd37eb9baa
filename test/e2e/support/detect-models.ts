/**
 * The detectors of the detection end-to-end tests (test/e2e/detect.test.ts), served by the shared
 * fixture server (test/e2e/fixture-repo.ts), each with a config.json as a user would write it:
 * - `centernet`: @vladmandic/human's CenterNet (MobileNetV3), 512×512 RGB 0–255 in, one output
 *   `tower_0/detections [1, 100, 6]` of x1, y1, x2, y2 in input pixels, score, class into COCO's 80
 *   labels: `columns: box,score,class`.
 * - `handtrack`: human's hand detector, a TensorFlow Object Detection API export (uint8 320×320 in):
 *   separate outputs, read as `raw_detection_boxes` `[1, 12804, 4]` (normalized y1, x1, y2, x2) and
 *   `raw_detection_scores` `[1, 12804, 8]` (background, then 7 classes).
 * - `yolo-tiny` and `yolo5-tiny`: a small YOLO-shaped net built here with tf.js layers (seeded
 *   weights), taking `[n, 3, 64, 64]` (NCHW) and answering `[n, 7, 64]`, the transposed rows of a
 *   YOLOv8 export (cx, cy, w, h normalized, then 3 class scores); the same model read as YOLOv5's
 *   `box,objectness,classes` (objectness, then 2 class scores).
 */
import { copyFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import { ROOT } from '../../../scripts/tools/launch.mjs'
import { MODELS as IMAGE_MODELS } from './image-models'
import { addPackagedModel } from './models'

export const HUMAN_MODELS = join(ROOT, 'node_modules/@vladmandic/human/models')

/** COCO's 80 class names, in the order of CenterNet's class indices, as human lists them (src/object/labels.ts). */
export function cocoLabels(): string[] {
  const source = readFileSync(join(ROOT, 'node_modules/@vladmandic/human/src/object/labels.ts'), 'utf8')
  return [...source.matchAll(/label: '([^']+)'/g)].map((m) => m[1]!)
}

/** Human's handtrack classes (src/hand/handtrack.ts), 1-based in the model's output. */
export const HAND_LABELS = ['hand', 'fist', 'pinch', 'point', 'face', 'tip', 'pinchtip']

/** The YOLO-shaped model's input side and its grid: one anchor per 8×8 cell. */
const YOLO_SIDE = 64
const YOLO_FILTERS = 7

/** The detectors' config.json, by model name. */
export const DETECTORS = {
  centernet: {
    inputs: { 'tower_0/images': { image: { size: [512, 512], channels: 3, range: [0, 255] } } },
    labels: [] as string[], // COCO's 80, filled in by addDetectModels (inline: metadata is then answered without loading the model)
    detect: {
      output: 'tower_0/detections',
      columns: 'box,score,class',
      box_format: 'xyxy',
      box_units: 'pixels',
      score_threshold: 0.2,
      iou_threshold: 0.5,
      max_detections: 20,
    },
  },
  // The export's own post-processed outputs (detection_boxes, _scores, _classes, num_detections) come
  // out of tf.js's wasm backend with scores near 0.006 where its cpu backend gives 0.2, so it is read
  // as human reads it: the raw decoded boxes of its 12804 anchors and their per-class scores (the
  // first column background), suppressed here.
  handtrack: {
    inputs: { 'input_tensor:0': { image: { size: [320, 320], channels: 3, range: [0, 255] } } },
    labels: HAND_LABELS,
    detect: {
      outputs: { boxes: 'Identity_6:0', scores: 'Identity_7:0' },
      box_format: 'yxyx',
      box_units: 'normalized',
      class_offset: 1,
      score_threshold: 0.2,
      iou_threshold: 0.3,
      max_detections: 10,
    },
  },
  'yolo-tiny': {
    inputs: { images: { image: { size: [YOLO_SIDE, YOLO_SIDE], channels: 3, range: [0, 1], layout: 'nchw' } } },
    labels: ['red', 'green', 'blue'],
    detect: {
      output: 'rows',
      columns: 'box,classes',
      box_format: 'cxcywh',
      box_units: 'normalized',
      score_threshold: 0.5,
      iou_threshold: 0.3,
      max_detections: 15,
    },
  },
  'yolo5-tiny': {
    inputs: {
      images: {
        image: { size: [YOLO_SIDE, YOLO_SIDE], channels: 3, range: [0, 1], layout: 'nchw', fit: 'center-crop' },
      },
    },
    labels: ['light', 'dark'],
    detect: {
      output: 'rows',
      columns: 'box,objectness,classes',
      box_format: 'cxcywh',
      box_units: 'normalized',
      score_threshold: 0.3,
      iou_threshold: 0.4,
      max_detections: 10,
      class_agnostic: true,
    },
  },
} as const

export type DetectorName = keyof typeof DETECTORS

/** Deterministic weights in [-scale, scale): a small LCG, so the model is the same on every run. */
function seeded(count: number, seed: number, scale: number): Float32Array {
  const values = new Float32Array(count)
  let state = seed >>> 0
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    values[i] = (state / 2 ** 32 - 0.5) * 2 * scale
  }
  return values
}

/**
 * A YOLO-shaped layers model: NCHW in, permuted to NHWC, two convolutions down to an 8×8 grid of
 * 7 sigmoid values, each cell a row, answered transposed as `[n, 7, 64]` (YOLOv8's export's layout).
 */
export function yoloModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [3, YOLO_SIDE, YOLO_SIDE], name: 'images' })
  let x = tfl.layers.permute({ dims: [2, 3, 1] }).apply(input) as tfl.SymbolicTensor
  x = tfl.layers
    .conv2d({ filters: 8, kernelSize: 4, strides: 4, activation: 'relu', name: 'stem' })
    .apply(x) as tfl.SymbolicTensor
  x = tfl.layers
    .conv2d({ filters: YOLO_FILTERS, kernelSize: 2, strides: 2, activation: 'sigmoid', name: 'head' })
    .apply(x) as tfl.SymbolicTensor
  x = tfl.layers.reshape({ targetShape: [(YOLO_SIDE / 8) ** 2, YOLO_FILTERS] }).apply(x) as tfl.SymbolicTensor
  const rows = tfl.layers.permute({ dims: [2, 1], name: 'rows' }).apply(x) as tfl.SymbolicTensor
  const model = tfl.model({ inputs: input, outputs: rows })
  model.setWeights(model.getWeights().map((w, i) => tf.tensor(seeded(w.size, 7 + i, i % 2 === 0 ? 0.6 : 0.3), w.shape)))
  return model
}

/** Saves a layers model as `<repo>/<name>/1/` (model.json and one shard). */
async function saveLayers(model: tfl.LayersModel, folder: string): Promise<void> {
  mkdirSync(folder, { recursive: true })
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      writeFileSync(join(folder, 'group1-shard1of1.bin'), new Uint8Array(artifacts.weightData as ArrayBuffer))
      const json = {
        modelTopology: artifacts.modelTopology,
        format: 'layers-model',
        weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: artifacts.weightSpecs }],
      }
      writeFileSync(join(folder, 'model.json'), JSON.stringify(json))
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
    }),
  )
}

/**
 * Writes the detectors into the repository `repo`, and human's emotion classifier (to compare
 * `:detect`'s refusals with `:classify`'s). The detection tests serve it alone: two detectors of
 * 20–35 MB of weights and kernels each, and their activations, need most of the wasm heap.
 */
export async function addDetectModels(repo: string): Promise<void> {
  addPackagedModel(repo, 'human-emotion', join(HUMAN_MODELS, IMAGE_MODELS['human-emotion'].source))
  writeFileSync(join(repo, 'human-emotion', 'config.json'), JSON.stringify(IMAGE_MODELS['human-emotion'].config))
  addPackagedModel(repo, 'centernet', join(HUMAN_MODELS, 'centernet.json'))
  addPackagedModel(repo, 'handtrack', join(HUMAN_MODELS, 'handtrack.json'))
  const yolo = yoloModel()
  await saveLayers(yolo, join(repo, 'yolo-tiny', '1'))
  yolo.dispose()
  mkdirSync(join(repo, 'yolo5-tiny', '1'), { recursive: true })
  for (const file of ['model.json', 'group1-shard1of1.bin'])
    copyFileSync(join(repo, 'yolo-tiny', '1', file), join(repo, 'yolo5-tiny', '1', file))
  for (const [name, config] of Object.entries(DETECTORS)) {
    writeFileSync(
      join(repo, name, 'config.json'),
      JSON.stringify(name === 'centernet' ? { ...config, labels: cocoLabels() } : config),
    )
  }
}

/** The repository of test/e2e/detect.test.ts's own server: the detectors, and the try-it page's files as the bundled repository has them. */
export async function writeDetectRepository(repo: string): Promise<void> {
  await addDetectModels(repo)
  cpSync(join(ROOT, 'model-assets/_ui'), join(repo, '_ui'), { recursive: true })
}
