/**
 * @module protocols/images/classify — labels and `:classify`: a model's class names, checked
 * against its output when it loads, and scores ranked into `[{label, score}]`.
 */
import { ApiError } from '../../errors'
import { labelLines } from '../../repository/model-config'
import type { ModelConfig, ResolvedVersion } from '../../repository/repository'
import type { Signature } from '../../runtime/signature'
import { tf } from '../../runtime/tf'
import { inputTransforms } from '../transforms'
import { checkDetect } from './detect'
import type { InputTransform } from '../transforms'

/** One ranked class, in Workers AI's shape. */
export interface Ranked {
  label: string
  score: number
}

/** What a loaded model serves beyond its signature: its input transforms and its labels. */
export interface Prepared {
  transforms: Map<string, InputTransform>
  labels?: string[]
  /** The output `:classify` ranks. */
  output?: string
}

/** Labels files past this are refused: 1 MB holds some 50 000 class names. */
const MAX_LABELS_BYTES = 1024 * 1024

// A memo keyed by the servable's signature object, which a batching wrapper shares with the model it
// wraps (as config.ts memoizes each env's vars): it lives and dies with the model.
const preparedModels = new WeakMap<object, Prepared>()

/** The output `:classify` ranks: `classify.output`, else the model's only output. Throws 503 naming what is wrong. */
function classifyOutput(name: string, config: ModelConfig, signature: Signature): string {
  const outputs = signature.outputs.map((s) => s.name)
  const chosen = config.classify?.output ?? (outputs.length === 1 ? outputs[0] : undefined)
  const list = outputs.map((o) => `'${o}'`).join(', ')
  if (chosen === undefined) throw new ApiError(503, `${name}/config.json: the model has outputs ${list}; classify.output must say which holds the scores`)
  if (!outputs.includes(chosen)) throw new ApiError(503, `${name}/config.json: classify.output names '${chosen}', which the model does not have; its outputs are ${list}`)
  return chosen
}

/** Parses a labels file: one label per line, trailing empty lines and `\r` ignored. */
export function parseLabels(bytes: ArrayBuffer): string[] {
  return labelLines(new TextDecoder().decode(bytes))
}

/**
 * Load-time checks of a model's image inputs, labels and classify output: every transform fits its
 * input, the labels file is there, and the labels number the output's classes. Each failure names
 * what disagrees (the load fails: 503). `readFile` reads a file beside the model's config.json.
 */
export async function prepareModel(target: ResolvedVersion, servable: { signature: Signature }, readFile: (file: string) => Promise<ArrayBuffer | null>): Promise<Prepared> {
  const { name, config } = target
  const transforms = inputTransforms(name, config, servable.signature.inputs)
  let labels: string[] | undefined
  if (typeof config.labels === 'string') {
    const bytes = await readFile(config.labels)
    if (bytes === null) throw new ApiError(503, `${name}/config.json: labels names the file '${config.labels}', which is not beside it`)
    if (bytes.byteLength > MAX_LABELS_BYTES) throw new ApiError(503, `${name}/${config.labels} is ${bytes.byteLength} bytes, more than ${MAX_LABELS_BYTES}`)
    labels = parseLabels(bytes)
  } else {
    labels = config.labels
  }
  let output: string | undefined
  if (config.detect) checkDetect(name, config.detect, servable.signature, labels!.length)
  // A detector's labels name its boxes' classes: it has no classify output unless its config gives one.
  if ((labels && !config.detect) || config.classify) {
    output = classifyOutput(name, config, servable.signature)
    const classes = servable.signature.outputs.find((s) => s.name === output)!.shape?.at(-1)
    if (labels && classes !== undefined && classes !== -1 && classes !== labels.length) {
      const where = typeof config.labels === 'string' ? `${name}/${config.labels}` : `${name}/config.json labels`
      throw new ApiError(503, `${where} has ${labels.length} labels, but output '${output}' has ${classes} classes`)
    }
  }
  const prepared = { transforms, labels, output }
  preparedModels.set(servable.signature, prepared)
  return prepared
}

/**
 * What `prepareModel` found for a loaded model. A servable that was not prepared (built outside the
 * isolate's load) gets its transforms and inline labels from config.json as they are.
 */
export function preparedOf(target: ResolvedVersion, servable: { signature: Signature }): Prepared {
  const known = preparedModels.get(servable.signature)
  if (known) return known
  const labels = Array.isArray(target.config.labels) ? target.config.labels : undefined
  const output = (labels && !target.config.detect) || target.config.classify ? classifyOutput(target.name, target.config, servable.signature) : undefined
  return { transforms: inputTransforms(target.name, target.config, servable.signature.inputs), labels, output }
}

/**
 * Ranks each row of `scores` (`[n, …, classes]`, the last dimension the classes) after `activation`:
 * the `k` best labels per row, best first.
 */
export async function rank(scores: tf.Tensor, labels: string[], k: number, activation: 'none' | 'softmax' | 'sigmoid', model: string): Promise<Ranked[][]> {
  const classes = scores.shape.at(-1)
  if (classes !== labels.length) throw new ApiError(503, `${model}: the model answered ${classes} classes, but it has ${labels.length} labels`)
  const { values, indices } = tf.tidy(() => {
    let rows = tf.reshape(tf.cast(scores, 'float32'), [-1, classes]) as tf.Tensor2D
    if (activation === 'softmax') rows = tf.softmax(rows)
    if (activation === 'sigmoid') rows = tf.sigmoid(rows)
    return tf.topk(rows, Math.min(k, classes))
  })
  try {
    const [best, at] = (await Promise.all([values.array(), indices.array()])) as [number[][], number[][]]
    return best.map((row, r) => row.map((score, i) => ({ label: labels[at[r]![i]!]!, score })))
  } finally {
    values.dispose()
    indices.dispose()
  }
}
