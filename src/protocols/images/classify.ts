/**
 * @module protocols/images/classify — labels and `:classify`: a model's class names, checked
 * against its output when it loads, and scores ranked into `[{label, score}]`.
 */
import {
  ApiError,
  CONFIG_FAULT_RETRY_SECONDS,
  configFault,
  missingFromModel,
  ModelUnavailableError,
} from '../../core/errors'
import { labelLines } from '../../repository/model-config'
import type { ModelConfig, ResolvedVersion } from '../../repository/repository'
import type { Signature } from '../../runtime/signature'
import { tf } from '../../runtime/tf'
import { inputTransforms } from '../transforms'
import { checkDetect } from './detect'
import type { InputTransform } from '../transforms'
import { TextTokenizer } from '../text/tokenizer'

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
  /** Bytes of JavaScript memory it keeps beside the tensors (its tokenizers), an estimate. */
  hostBytes: number
}

/** tokenizer.json files past this are refused: a 250 000-token multilingual vocabulary is about 17 MB. */
const MAX_TOKENIZER_BYTES = 32 * 1024 * 1024
/**
 * JavaScript heap bytes a tokenizer keeps per byte of its file: its vocabulary as a Map of strings
 * both ways, and its merges. An estimate: V8's heap cannot be read from inside a Worker.
 */
const TOKENIZER_HEAP_PER_FILE_BYTE = 3

/**
 * The tokenizers the model's text inputs name, each read from the version's folder once and parsed;
 * 503 naming the file when one is missing or not a tokenizer.
 */
async function loadTokenizers(
  target: ResolvedVersion,
  readFile: (file: string) => Promise<ArrayBuffer | null>,
): Promise<{ tokenizers: Map<string, TextTokenizer>; bytes: number }> {
  const tokenizers = new Map<string, TextTokenizer>()
  let bytes = 0
  for (const declared of Object.values(target.config.inputs ?? {})) {
    const file = declared.text?.tokenizer
    if (file === undefined || tokenizers.has(file)) continue
    const where = `${target.name}/${target.version}/${file}`
    const data = await readFile(`${target.version}/${file}`)
    if (data === null)
      throw new ApiError(
        503,
        `${target.name}/config.json: a text input names the tokenizer '${file}', which is not in the version's folder (${where})`,
      )
    if (data.byteLength > MAX_TOKENIZER_BYTES)
      throw new ApiError(503, `${where} is ${data.byteLength} bytes, more than ${MAX_TOKENIZER_BYTES}`)
    try {
      tokenizers.set(file, new TextTokenizer(JSON.parse(new TextDecoder().decode(data))))
    } catch (error) {
      throw new ApiError(
        503,
        `${where} is not a tokenizer this server can run: ${error instanceof Error ? error.message : String(error)}`,
      )
    }
    bytes += data.byteLength * TOKENIZER_HEAP_PER_FILE_BYTE
  }
  return { tokenizers, bytes }
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
  if (chosen === undefined)
    throw configFault(name, `the model has outputs ${list}; classify.output must say which holds the scores`)
  if (!outputs.includes(chosen)) throw missingFromModel(name, 'classify.output', chosen, 'output', outputs)
  return chosen
}

/** Parses a labels file: one label per line, trailing empty lines and `\r` ignored. */
export function parseLabels(bytes: ArrayBuffer): string[] {
  return labelLines(new TextDecoder().decode(bytes))
}

/**
 * Load-time checks of a model's image inputs, labels and classify output: every transform fits its
 * input, the labels file is there, and the labels number the output's classes. Each failure names
 * what disagrees (the load fails: 503). `readFile` reads a file of the model's folder (beside its
 * config.json; a version's files as `<version>/<file>`). Text inputs' tokenizers are loaded here.
 */
export async function prepareModel(
  target: ResolvedVersion,
  servable: { signature: Signature },
  readFile: (file: string) => Promise<ArrayBuffer | null>,
): Promise<Prepared> {
  const { name, config } = target
  const text = await loadTokenizers(target, readFile)
  const transforms = inputTransforms(name, config, servable.signature.inputs, text.tokenizers)
  let labels: string[] | undefined
  if (typeof config.labels === 'string') {
    const bytes = await readFile(config.labels)
    if (bytes === null) throw configFault(name, `labels names the file '${config.labels}', which is not beside it`)
    if (bytes.byteLength > MAX_LABELS_BYTES)
      throw new ModelUnavailableError(
        `${name}/${config.labels} is ${bytes.byteLength} bytes, more than ${MAX_LABELS_BYTES}`,
        CONFIG_FAULT_RETRY_SECONDS,
      )
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
  const prepared = { transforms, labels, output, hostBytes: text.bytes }
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
  const output =
    (labels && !target.config.detect) || target.config.classify
      ? classifyOutput(target.name, target.config, servable.signature)
      : undefined
  return {
    transforms: inputTransforms(target.name, target.config, servable.signature.inputs),
    labels,
    output,
    hostBytes: 0,
  }
}

/**
 * Ranks each row of `scores` (`[n, …, classes]`, the last dimension the classes) after `activation`:
 * the `k` best labels per row, best first.
 */
export async function rank(
  scores: tf.Tensor,
  labels: string[],
  k: number,
  activation: 'none' | 'softmax' | 'sigmoid',
  model: string,
): Promise<Ranked[][]> {
  const classes = scores.shape.at(-1)
  if (classes !== labels.length)
    throw new ApiError(503, `${model}: the model answered ${classes} classes, but it has ${labels.length} labels`)
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
