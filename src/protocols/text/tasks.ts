/**
 * @module protocols/text/tasks — texts in, Workers AI's answers out: `[{label, score}]` for a text
 * classifier, `{shape, data, pooling}` for an embedding model. Transport-neutral: the `:classify` and
 * `:embed` routes and the `Models` entrypoint's `run(name, {text})` call these.
 *
 * Every input of the model must be fed from text (`inputs.<name>.text` in its config.json); the texts
 * are encoded once per tokenizer and each input takes its field (ids, attention mask, token types).
 */
import type { Config } from '../../core/config'
import { readConfig } from '../../core/config'
import { ApiError, badRequest } from '../../core/errors'
import { isolate } from '../../isolate'
import type { ModelLease } from '../../cache/lease'
import { predict } from '../../predict'
import type { Caller, Prediction, PredictionSpec } from '../../predict'
import type { KeyInput } from '../../cache/prediction-cache'
import type { EmbedConfig } from '../../repository/model-config'
import type { Selector } from '../../repository/repository'
import { tf } from '../../runtime/tf'
import { preparedOf, rank } from '../images/classify'
import type { Ranked } from '../images/classify'
import { requestBudget } from '../transforms'
import { batchOf, truncatedTexts } from './transform'

/** An embedding answer, in Workers AI's text-embeddings shape. */
export interface Embeddings {
  shape: [number, number]
  data: number[][]
  pooling: EmbedConfig['pooling']
}

/** What a text prediction adds to a prediction: how many texts were cut to `max_length` tokens. */
export type TextPrediction<T> = Prediction<T> & { truncated: number }

const describe = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value)

/**
 * `text` as a request gives it — a string or a list of strings — checked: not empty, at most
 * MAX_TEXTS, each a string. `field` names it in messages (`text`, `instances`).
 */
export function readTexts(value: unknown, field: string, config: Config): { texts: string[]; single: boolean } {
  if (typeof value === 'string') return { texts: [value], single: true }
  if (!Array.isArray(value))
    throw badRequest(`'${field}' must be a string or a list of strings, got ${describe(value)}`)
  if (value.length === 0) throw badRequest(`'${field}' is an empty list: send at least one text`)
  if (value.length > config.MAX_TEXTS)
    throw badRequest(`'${field}' has ${value.length} texts, more than the limit of ${config.MAX_TEXTS} (MAX_TEXTS)`)
  value.forEach((text, i) => {
    if (typeof text !== 'string') throw badRequest(`'${field}[${i}]' must be a string, got ${describe(text)}`)
  })
  return { texts: value as string[], single: false }
}

const utf8 = new TextEncoder()

/** The texts as the transforms take them, UTF-8, one element each. */
export const textElements = (texts: readonly string[]) => texts.map((text) => utf8.encode(text))

/** Every input's text transform, or 400 naming an input that is not fed from text. */
function textInputs(held: ModelLease) {
  const { transforms } = preparedOf(held.target, held.lease.model)
  const inputs = held.lease.model.signature.inputs
  for (const spec of inputs) {
    if (transforms.get(spec.name)?.kind !== 'text') {
      throw badRequest(
        `model '${held.target.name}' cannot take text: input '${spec.name}' has no tokenizer (inputs.${spec.name}.text in its config.json)`,
      )
    }
  }
  return inputs.map((spec) => ({ name: spec.name, transform: transforms.get(spec.name)! }))
}

/** The feeds of a text request: each input from the same elements, so they share one encoding per tokenizer. */
async function textFeeds(
  held: ModelLease,
  elements: Uint8Array[],
  feeds: Record<string, tf.Tensor>,
  config: Config,
  field: string,
) {
  const where = (i: number) => (elements.length === 1 && field === 'text' ? "'text'" : `'${field}[${i}]'`)
  const budget = requestBudget(config)
  for (const { name, transform } of textInputs(held))
    feeds[name] = await transform.tensor(elements, where, config, budget)
}

/** The prediction cache's key of a text request: the texts themselves, before any tokenizing. */
function textKey(held: ModelLease, elements: Uint8Array[]): Record<string, KeyInput> {
  const [first] = textInputs(held)
  const lengths = new Uint8Array(new Uint32Array(elements.map((e) => e.byteLength)).buffer)
  const bytes = new Uint8Array(lengths.byteLength + elements.reduce((n, e) => n + e.byteLength, 0))
  bytes.set(lengths)
  let at = lengths.byteLength
  for (const e of elements) {
    bytes.set(e, at)
    at += e.byteLength
  }
  return { [first!.name]: { dtype: 'text', shape: [elements.length], bytes } }
}

/** The labels and output `:classify` ranks, or 400 for a model without labels. */
function classifier(held: ModelLease) {
  const { labels, output } = preparedOf(held.target, held.lease.model)
  if (!labels || !output)
    throw badRequest(
      `model '${held.target.name}' has no labels, so it cannot classify; add "labels" to its config.json, or call :predict`,
    )
  return { labels, output }
}

/** A text request as read from its body: its texts, the field that held them, and whether it was one string. */
export interface TextRequest {
  texts: string[]
  field: 'text' | 'instances'
  single: boolean
}

type Body = Record<string, unknown>
const isBody = (value: unknown): value is Body => typeof value === 'object' && value !== null && !Array.isArray(value)

/** Whether a parsed `:classify` body is a text request: `text`, or `instances` (TF Serving's classify body has `examples`). */
export const isTextBody = (body: unknown): body is Body =>
  isBody(body) && !('examples' in body) && ('text' in body || 'instances' in body)

/**
 * TF Serving's row form for a text model: each instance a string, or an object of the model's
 * text-fed inputs all holding that row's one text.
 */
function instanceTexts(instances: unknown): unknown {
  if (!Array.isArray(instances)) throw badRequest(`'instances' must be a list of texts`)
  return instances.map((instance, i) => {
    if (!isBody(instance)) return instance
    const values = Object.entries(instance)
    if (values.length === 0) throw badRequest(`'instances[${i}]' is an empty object: send the row's text`)
    const [[first, text]] = values as [[string, unknown]]
    for (const [input, other] of values) {
      if (other !== text)
        throw badRequest(`'instances[${i}]': a text model takes one text per row, but '${first}' and '${input}' differ`)
    }
    return text
  })
}

/** The texts of a `{"text": …}` (Workers AI) or `{"instances": […]}` (TF Serving) body, checked. */
export function textRequest(body: Body, config: Config): TextRequest {
  const field = 'text' in body ? 'text' : 'instances'
  const { texts, single } = readTexts(field === 'text' ? body.text : instanceTexts(body.instances), field, config)
  return { texts, field, single }
}

/**
 * The prediction of a text classification: the top-k labels of each text, best first — one list for
 * one `text` string, a list per text for a `text` list, TF Serving's `{"results": …}` for `instances`.
 * `elements` are the texts as the transforms take them (after the run, `truncatedTexts` counts the cut ones).
 */
export function classifyTextSpec(
  request: TextRequest,
  elements: Uint8Array[],
  config: Config,
  topK?: number,
): PredictionSpec<unknown> {
  const k = (held: ModelLease) => topK ?? held.target.config.classify?.top_k ?? 5
  const shape = request.field === 'instances' ? 'results' : request.single ? 'one' : 'list'
  return {
    outputs: (held) => [classifier(held).output],
    format: (held) => `classify-text-${shape};top_k=${k(held)}`,
    keyInputs: (held) => textKey(held, elements),
    feeds: (held, feeds) => textFeeds(held, elements, feeds, config, request.field),
    async answer(held, outputs) {
      const { labels, output } = classifier(held)
      const ranked = await rank(
        outputs[output]!,
        labels,
        k(held),
        held.target.config.classify?.activation ?? 'none',
        held.target.name,
      )
      if (shape === 'results') return { results: ranked.map((row) => row.map(({ label, score }) => [label, score])) }
      return shape === 'one' ? ranked[0] : ranked
    },
  }
}

/** Texts through a text classifier; `read` gives the request once traffic control has let it in. */
export async function classifyTexts(
  caller: Caller,
  name: string,
  selector: Selector,
  read: () => Promise<TextRequest>,
  topK?: number,
): Promise<TextPrediction<unknown>> {
  const config = readConfig(caller.env)
  let elements: Uint8Array[] = []
  const prediction = await predict(caller, name, selector, read, (request) =>
    classifyTextSpec(request, (elements = textElements(request.texts)), config, topK),
  )
  return { ...prediction, truncated: truncatedTexts(elements) }
}

/** The output `:embed` reads, or 400 for a model without `embed`; 503 when config.json names an output the model lacks. */
function embedder(held: ModelLease): { output: string; pooling: EmbedConfig['pooling']; normalize: boolean } {
  const { name, config } = held.target
  if (!config.embed)
    throw badRequest(
      `model '${name}' has no "embed" in its config.json, so it cannot embed; add "embed": {"output": …, "pooling": "mean"}, or call :predict`,
    )
  const outputs = held.lease.model.signature.outputs.map((s) => s.name)
  const output = config.embed.output ?? (outputs.length === 1 ? outputs[0] : undefined)
  const list = outputs.map((o) => `'${o}'`).join(', ')
  if (output === undefined)
    throw new ApiError(
      503,
      `${name}/config.json: the model has outputs ${list}; embed.output must say which holds the vectors`,
    )
  if (!outputs.includes(output))
    throw new ApiError(
      503,
      `${name}/config.json: embed.output names '${output}', which the model does not have; its outputs are ${list}`,
    )
  return { output, pooling: config.embed.pooling, normalize: config.embed.normalize }
}

/**
 * One vector per text from `hidden`: `[n, tokens, d]` pooled over the attention mask (`mean`) or at
 * the first token (`cls`), or `[n, d]` as it is (`none`); scaled to length 1 with `normalize`.
 */
function pool(
  hidden: tf.Tensor,
  mask: Int32Array | undefined,
  length: number,
  how: ReturnType<typeof embedder>,
  model: string,
): tf.Tensor2D {
  const want = how.pooling === 'none' ? 2 : 3
  if (hidden.rank !== want) {
    throw new ApiError(
      503,
      `${model}: embed.pooling "${how.pooling}" needs a rank-${want} output, but '${how.output}' has shape [${hidden.shape.join(', ')}]`,
    )
  }
  return tf.tidy(() => {
    let vectors: tf.Tensor2D
    if (how.pooling === 'none') vectors = tf.cast(hidden, 'float32') as tf.Tensor2D
    else if (how.pooling === 'cls')
      vectors = tf.squeeze(tf.slice(tf.cast(hidden, 'float32'), [0, 0, 0], [-1, 1, -1]), [1]) as tf.Tensor2D
    else {
      const [n, tokens] = hidden.shape as [number, number, number]
      if (!mask || tokens !== length)
        throw new ApiError(
          503,
          `${model}: output '${how.output}' has ${tokens} tokens per text, the encoding ${length}: mean pooling cannot match them`,
        )
      const weights = tf.tensor3d(Float32Array.from(mask), [n, tokens, 1])
      const summed = tf.sum(tf.mul(tf.cast(hidden, 'float32'), weights), 1)
      vectors = tf.div(summed, tf.maximum(tf.sum(weights, 1), 1e-9)) as tf.Tensor2D
    }
    if (how.normalize) vectors = tf.div(vectors, tf.maximum(tf.norm(vectors, 2, 1, true), 1e-12)) as tf.Tensor2D
    return vectors
  })
}

/** Texts through an embedding model: one vector each, Workers AI's `{shape, data, pooling}`; `read` gives the texts once traffic control has let the request in. */
export async function embedTexts(
  caller: Caller,
  name: string,
  selector: Selector,
  read: () => Promise<string[]>,
): Promise<TextPrediction<Embeddings>> {
  const config = readConfig(caller.env)
  let elements: Uint8Array[] = []
  const prediction = await predict(caller, name, selector, read, (texts): PredictionSpec<Embeddings> => {
    elements = textElements(texts)
    return {
      outputs: (held) => [embedder(held).output],
      format: () => 'embed',
      keyInputs: (held) => textKey(held, elements),
      feeds: (held, feeds) => textFeeds(held, elements, feeds, config, 'text'),
      async answer(held, outputs) {
        const how = embedder(held)
        const batch = batchOf(elements)
        const vectors = pool(
          outputs[how.output]!,
          batch?.fields.attention_mask,
          batch?.length ?? 0,
          how,
          held.target.name,
        )
        try {
          const data = (await vectors.array()) as number[][]
          return { shape: vectors.shape as [number, number], data, pooling: how.pooling }
        } finally {
          vectors.dispose()
        }
      },
    }
  })
  return { ...prediction, truncated: truncatedTexts(elements) }
}

/**
 * `{text}` as the `Models` entrypoint takes it: embeddings for a model whose config.json has `embed`,
 * else a classification per text (one list for one string), as `:embed` and `:classify` answer.
 */
export async function runText(
  caller: Caller,
  name: string,
  selector: Selector,
  text: unknown,
  topK?: number,
): Promise<TextPrediction<unknown>> {
  const config = readConfig(caller.env)
  const { texts, single } = readTexts(text, 'text', config)
  const repository = await isolate().repository(caller.env, caller.waitUntil)
  // config.json is the model's, shared by its versions: whichever version traffic picks embeds or classifies alike.
  if (repository.config(name).embed) return embedTexts(caller, name, selector, async () => texts)
  return classifyTexts(caller, name, selector, async () => ({ texts, field: 'text', single }), topK)
}
