/**
 * @module protocols/images/detect — a detector's outputs read as labelled boxes, in Workers AI's
 * shape `[{label, score, box: {xmin, ymin, xmax, ymax}}]`, as the model's `detect` block in
 * config.json says (docs/detection.md).
 *
 * Rows are read straight from the output's values (no transpose of a `[1, K, N]` output is made),
 * filtered by score, then non-max suppression runs here, per class unless `class_agnostic`: the
 * greedy algorithm of `tf.image.nonMaxSuppression` (candidates by score, a box dropped when its IoU
 * with a kept one is ≥ the threshold, scores kept when strictly above theirs), on a few hundred boxes
 * at most after the score filter. Boxes are then mapped from the model's input back onto the image
 * as sent, undoing the image transform's crop and resize, and clamped to it.
 */
import { ApiError, badRequest } from '../../core/errors'
import { classCount, detectProblems, rowAxis, rowWidth } from '../../repository/detect-layout'
import type { DetectConfig, ImageTransform } from '../../repository/model-config'
import { MAX_DETECTIONS } from '../../repository/model-config'
import type { Signature } from '../../runtime/signature'
import type { tf } from '../../runtime/tf'
import { sourceRegion } from './preprocess'

/** One detection, in Workers AI's shape: the box in pixels of the image as sent. */
export interface Detection {
  label: string
  score: number
  box: { xmin: number; ymin: number; xmax: number; ymax: number }
}

/** The thresholds of one request: config.json's, or a request's within bounds. */
export interface DetectOptions {
  score_threshold: number
  iou_threshold: number
  max_detections: number
}

/** The thresholds a request may override, with their bounds, as the query parameters and RPC options name them. */
export const DETECT_OPTIONS = {
  score_threshold: { min: 0, max: 1, integer: false },
  iou_threshold: { min: 0, max: 1, integer: false },
  max_detections: { min: 1, max: MAX_DETECTIONS, integer: true },
} as const

/** A request's overrides, checked against their bounds: 400 naming the parameter (`what` prefixes its name: `query parameter `, `options.`). */
export function askedDetectOptions(read: (key: keyof DetectOptions) => unknown, what: string): Partial<DetectOptions> {
  const asked: Partial<DetectOptions> = {}
  for (const [key, bound] of Object.entries(DETECT_OPTIONS) as [
    keyof DetectOptions,
    (typeof DETECT_OPTIONS)[keyof DetectOptions],
  ][]) {
    const raw = read(key)
    if (raw === undefined) continue
    const value = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw
    const kind = bound.integer ? 'an integer' : 'a number'
    if (
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      (bound.integer && !Number.isInteger(value)) ||
      value < bound.min ||
      value > bound.max
    ) {
      throw badRequest(
        `${what}${key} ${JSON.stringify(raw)} is out of bounds: ${kind} from ${bound.min} to ${bound.max}`,
      )
    }
    asked[key] = value
  }
  return asked
}

/** The thresholds for one request: what it asked, else the model's detect block. */
export const detectOptions = (detect: DetectConfig, asked: Partial<DetectOptions>): DetectOptions => ({
  score_threshold: asked.score_threshold ?? detect.score_threshold,
  iou_threshold: asked.iou_threshold ?? detect.iou_threshold,
  max_detections: asked.max_detections ?? detect.max_detections,
})

/** The outputs `:detect` reads. */
export function detectOutputs(detect: DetectConfig): string[] {
  if (detect.output !== undefined) return [detect.output]
  const { boxes, scores, classes, count } = detect.outputs!
  return [boxes, scores, ...(classes !== undefined ? [classes] : []), ...(count !== undefined ? [count] : [])]
}

/** Load-time check of the detect block against the built model and its labels: 503 naming each problem. */
export function checkDetect(model: string, detect: DetectConfig, signature: Signature, labels: number): void {
  const problems = detectProblems(detect, signature.outputs, labels)
  if (problems.length > 0) throw new ApiError(503, `${model}/config.json: ${problems.join('; ')}`)
}

/** Where one image went: its size as sent, and the transform that made the model's input from it. */
export interface ImageGeometry {
  width: number
  height: number
}

/** A box kept for non-max suppression: corners in pixels of the model's input, x1 ≤ x2, y1 ≤ y2. */
interface Candidate {
  x1: number
  y1: number
  x2: number
  y2: number
  score: number
  cls: number
  index: number
}

/** Intersection over union, as tf.image.nonMaxSuppression computes it (0 for an empty box). */
function iou(a: Candidate, b: Candidate): number {
  const areaA = (a.x2 - a.x1) * (a.y2 - a.y1)
  const areaB = (b.x2 - b.x1) * (b.y2 - b.y1)
  if (areaA <= 0 || areaB <= 0) return 0
  const w = Math.max(Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1), 0)
  const h = Math.max(Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1), 0)
  const inter = w * h
  return inter / (areaA + areaB - inter)
}

/** Greedy non-max suppression: best first, a box dropped when it overlaps a kept one (of its class, unless agnostic) by `threshold` or more. */
export function suppress(candidates: Candidate[], threshold: number, max: number, agnostic: boolean): Candidate[] {
  candidates.sort((a, b) => b.score - a.score || a.index - b.index)
  const kept: Candidate[] = []
  for (const candidate of candidates) {
    if (kept.length >= max) break
    if (kept.some((k) => (agnostic || k.cls === candidate.cls) && iou(k, candidate) >= threshold)) continue
    kept.push(candidate)
  }
  return kept
}

/** Reads the 4 box values in `format` and `units` as corners in input pixels. */
function corners(
  v: (k: number) => number,
  detect: DetectConfig,
  [inH, inW]: readonly [number, number],
): [number, number, number, number] {
  let [x1, y1, x2, y2] = [v(0), v(1), v(2), v(3)]
  if (detect.box_format === 'yxyx') [x1, y1, x2, y2] = [v(1), v(0), v(3), v(2)]
  else if (detect.box_format === 'cxcywh')
    [x1, y1, x2, y2] = [v(0) - v(2) / 2, v(1) - v(3) / 2, v(0) + v(2) / 2, v(1) + v(3) / 2]
  if (detect.box_units === 'normalized') [x1, y1, x2, y2] = [x1 * inW, y1 * inH, x2 * inW, y2 * inH]
  return [Math.min(x1, x2), Math.min(y1, y2), Math.max(x1, x2), Math.max(y1, y2)]
}

/** The best class score among `from`…`to` − 1 of a row: its column and value. */
function best(v: (k: number) => number, from: number, to: number): [number, number] {
  let at = from
  for (let k = from + 1; k < to; k++) if (v(k) > v(at)) at = k
  return [at, v(at)]
}

/** What the detector's outputs mean, read once per request: how to get each image's rows. */
interface Rows {
  count: number
  /** Row r of image i: its box values and score and class, or undefined to skip it (class below 0, NaN). */
  read(i: number, r: number): { v: (k: number) => number; score: number; cls: number } | undefined
}

/** The rows of `[n, N, K]` or `[n, K, N]`, each as `columns` says. */
function tensorRows(
  detect: DetectConfig,
  output: tf.Tensor,
  data: ArrayLike<number>,
  labels: number,
  model: string,
): Rows {
  const columns = detect.columns!
  const width = rowWidth(columns, classCount(detect, labels))
  const axis = output.rank === 3 ? rowAxis(output.shape, width) : undefined
  if (axis !== 1 && axis !== 2) {
    throw new ApiError(
      503,
      `${model}: output '${detect.output}' answered shape [${output.shape.join(', ')}], which has no dimension of ${width} (rows of ${columns}, detect in config.json)`,
    )
  }
  const [, a, b] = output.shape as [number, number, number]
  const count = axis === 2 ? a : b
  const offset = detect.class_offset
  return {
    count,
    read(i, r) {
      const base = i * a * b
      const v = axis === 2 ? (k: number) => data[base + r * b + k]! : (k: number) => data[base + k * b + r]!
      if (columns === 'box,score,class') {
        const cls = Math.round(v(5)) - offset
        return Number.isNaN(cls) || cls < 0 ? undefined : { v, score: v(4), cls }
      }
      const head = columns === 'box,classes' ? 4 : 5
      // Columns below class_offset are background, never a detection's class.
      const [at, score] = best(v, head + offset, width)
      return { v, score: head === 5 ? v(4) * score : score, cls: at - head - offset }
    },
  }
}

/** The rows of separate outputs: boxes `[n, N, 4]` (or `[n, N, 1, 4]`), scores `[n, N]` or `[n, N, C]`, classes and count optional. */
async function separateRows(
  detect: DetectConfig,
  outputs: Record<string, tf.Tensor>,
  images: number,
  labels: number,
): Promise<Rows> {
  const names = detect.outputs!
  const [boxes, scores, classes, count] = await Promise.all(
    [names.boxes, names.scores, names.classes, names.count].map((n) =>
      n === undefined ? undefined : outputs[n]!.data(),
    ),
  )
  const rows = boxes!.length / images / 4
  const perClass = outputs[names.scores]!.rank === 3 ? scores!.length / images / rows : 0
  const offset = detect.class_offset
  return {
    count: rows,
    read(i, r) {
      if (count && r >= Number(count[i])) return undefined
      const at = (i * rows + r) * 4
      const v = (k: number) => Number(boxes![at + k])
      if (perClass > 0) {
        const s = (k: number) => Number(scores![(i * rows + r) * perClass + k])
        const [column, score] = best(s, offset, perClass)
        return { v, score, cls: column - offset }
      }
      const cls = classes ? Math.round(Number(classes[i * rows + r])) - offset : 0
      return Number.isNaN(cls) || cls < 0 ? undefined : { v, score: Number(scores![i * rows + r]), cls }
    },
  }
}

/**
 * Each image's detections from the detector's outputs: rows scored above `score_threshold`,
 * suppressed, at most `max_detections`, best first, boxes in pixels of `images[i]` as sent.
 */
export async function detections(
  outputs: Record<string, tf.Tensor>,
  detect: DetectConfig,
  labels: string[],
  image: Pick<ImageTransform, 'size' | 'fit'>,
  images: ImageGeometry[],
  options: DetectOptions,
  model: string,
): Promise<Detection[][]> {
  let rows: Rows
  if (detect.output !== undefined) {
    const output = outputs[detect.output]!
    rows = tensorRows(detect, output, await output.data(), labels.length, model)
  } else {
    rows = await separateRows(detect, outputs, images.length, labels.length)
  }
  const [inH, inW] = image.size
  return images.map((geometry, i) => {
    const candidates: Candidate[] = []
    for (let r = 0; r < rows.count; r++) {
      const row = rows.read(i, r)
      if (!row || !(row.score > options.score_threshold)) continue
      if (row.cls >= labels.length) {
        throw new ApiError(
          503,
          `${model}: the model answered class ${row.cls + detect.class_offset}, but labels name ${labels.length} classes${detect.class_offset ? ` after class_offset ${detect.class_offset}` : ''}`,
        )
      }
      const [x1, y1, x2, y2] = corners(row.v, detect, image.size)
      candidates.push({ x1, y1, x2, y2, score: row.score, cls: row.cls, index: r })
    }
    // Input pixels back onto the image as sent: the resize scaled the crop (or the whole image) to the input.
    const region = sourceRegion(geometry.width, geometry.height, image)
    const sx = region.width / inW
    const sy = region.height / inH
    const clamp = (value: number, high: number) => Math.min(Math.max(value, 0), high)
    return suppress(candidates, options.iou_threshold, options.max_detections, detect.class_agnostic).map((c) => ({
      label: labels[c.cls]!,
      score: c.score,
      box: {
        xmin: clamp(region.x + c.x1 * sx, geometry.width),
        ymin: clamp(region.y + c.y1 * sy, geometry.height),
        xmax: clamp(region.x + c.x2 * sx, geometry.width),
        ymax: clamp(region.y + c.y2 * sy, geometry.height),
      },
    }))
  })
}
