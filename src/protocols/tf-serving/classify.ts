/**
 * @module protocols/tf-serving/classify — `:classify` with no transport in it: an image in, the
 * model's top-k labels out.
 *
 * Two requests: one encoded image (a raw HTTP body, or the service binding's `{image}`), answered in
 * Workers AI's shape `[{"label", "score"}]`; or TF Serving's classify request
 * `{"examples": [{input: {"b64": …}}]}`, answered in its shape `{"results": [[[label, score], …]]}`;
 * or, for a text model, texts (protocols/text/tasks.ts).
 * `topK` (HTTP: `?top_k=N`) overrides config.json.
 * @see https://www.tensorflow.org/tfx/serving/api_rest#classify_and_regress_api
 */
import { z } from 'zod'
import { readConfig } from '../../core/config'
import { badRequest } from '../../core/errors'
import type { ModelLease } from '../../cache/lease'
import { predict } from '../../predict'
import type { Caller, Prediction, PredictionSpec } from '../../predict'
import type { Selector } from '../../repository/repository'
import type { tf } from '../../runtime/tf'
import { jsonFeed } from '../encoded'
import { preparedOf, rank } from '../images/classify'
import type { Prepared, Ranked } from '../images/classify'
import { checkInputNames } from '../names'
import { parseBody } from '../schemas'
import { requestLimits } from '../tensors'
import { classifyTextSpec, isTextBody, textElements, textRequest } from '../text/tasks'
import type { TextRequest } from '../text/tasks'
import { truncatedTexts } from '../text/transform'
import { checkSignatureName } from './dataplane'
import { requestBudget } from '../transforms'
import type { InputTransform } from '../transforms'

/** TF Serving's classify request, with each example's features keyed by input name. */
const ClassifyRequest = z.object({
  signature_name: z.string().optional(),
  context: z.record(z.string(), z.unknown()).optional(),
  examples: z
    .array(z.record(z.string(), z.unknown()), { error: "'examples' must be a list of objects keyed by input name" })
    .min(1, "'examples' is empty: send at least one"),
})

/** The labels and output to rank, or 400 for a model without labels. */
function classifier(held: ModelLease): Prepared & { labels: string[]; output: string } {
  const prepared = preparedOf(held.target, held.lease.model)
  if (!prepared.labels || !prepared.output) {
    throw badRequest(
      `model '${held.target.name}' has no labels, so it cannot classify; add "labels" to its config.json, or call :predict`,
    )
  }
  return prepared as Prepared & { labels: string[]; output: string }
}

/**
 * The parts of a classify prediction every body shares: the output ranked, `top_k` (asked, else
 * classify.top_k in config.json, else 5) in the cache key, the ranking as the answer.
 */
function ranking(topK: number | undefined) {
  const k = (held: ModelLease) => topK ?? held.target.config.classify?.top_k ?? 5
  return {
    outputs: (held: ModelLease) => [classifier(held).output],
    rank: (held: ModelLease, outputs: Record<string, tf.Tensor>) =>
      rank(
        outputs[classifier(held).output]!,
        classifier(held).labels,
        k(held),
        held.target.config.classify?.activation ?? 'none',
        held.target.name,
      ),
    format: (shape: string) => (held: ModelLease) => `classify-${shape};top_k=${k(held)}`,
  }
}

/**
 * One encoded image through the one prediction path (src/predict.ts): the model's one image input
 * gets it, the answer is the top-k list, `[{label, score}]`. What a raw image body to `:classify` and
 * the service binding's `run(model, {image})` share; `read` gives the bytes once traffic control has
 * let the request in. `what` names the image in messages. `decodeMs`: the time decoding and
 * preprocessing took, absent when the prediction cache answered.
 */
/** The model's one image input and its transform, or 400 saying why it cannot take `what` alone, and what to send `instead`. */
export function oneImageInput(
  held: ModelLease,
  what: string,
  instead: string,
): { input: string; transform: InputTransform } {
  const { transforms } = preparedOf(held.target, held.lease.model)
  const inputs = held.lease.model.signature.inputs
  const transform = inputs.length === 1 ? transforms.get(inputs[0]!.name) : undefined
  if (!transform) {
    const why =
      inputs.length === 1
        ? `input '${inputs[0]!.name}' has no image preprocessing (inputs.${inputs[0]!.name}.image in its config.json)`
        : `it has ${inputs.length} inputs`
    throw badRequest(`model '${held.target.name}' cannot take ${what}: ${why}; ${instead}`)
  }
  return { input: inputs[0]!.name, transform }
}

export async function classifyImage(
  caller: Caller,
  name: string,
  selector: Selector,
  read: () => Promise<Uint8Array>,
  topK?: number,
  what = 'image',
): Promise<Prediction<Ranked[]> & { decodeMs?: number }> {
  const config = readConfig(caller.env)
  const ranked = ranking(topK)
  const imageInput = (held: ModelLease) => {
    classifier(held)
    return oneImageInput(held, `a raw ${what} body`, `send TF Serving's {"examples": [...]} as JSON`)
  }
  let decodeMs: number | undefined
  const prediction = await predict(caller, name, selector, read, (bytes) => ({
    outputs: ranked.outputs,
    format: ranked.format('ranked'),
    // Keyed by the encoded bytes: a hit neither decodes nor resizes the image.
    keyInputs: (held) => ({ [imageInput(held).input]: { dtype: 'encoded-image', shape: [1], bytes } }),
    async feeds(held, feeds) {
      const { input, transform } = imageInput(held)
      const decoding = Date.now()
      feeds[input] = await transform.tensor([bytes], () => 'request body', config, requestBudget(config))
      decodeMs = Date.now() - decoding
    },
    answer: async (held, outputs): Promise<Ranked[]> => (await ranked.rank(held, outputs))[0]!,
  }))
  return { ...prediction, ...(decodeMs !== undefined ? { decodeMs } : {}) }
}

/**
 * A JSON classify body through the one prediction path: texts for a text model (`{"text": …}` or
 * `{"instances": […]}`: protocols/text/tasks.ts), else TF Serving's classify request, each example's
 * inputs, b64 or numbers, batched in order. `read` gives the body's JSON once traffic control has
 * let it in; it is checked before the model is leased. `truncated`: texts cut to `max_length`.
 */
export async function classifyExamples(
  caller: Caller,
  name: string,
  selector: Selector,
  read: () => Promise<unknown>,
  topK?: number,
): Promise<Prediction<unknown> & { truncated: number }> {
  const config = readConfig(caller.env)
  const ranked = ranking(topK)
  const parsed = async (): Promise<{ text: TextRequest } | { examples: z.infer<typeof ClassifyRequest> }> => {
    const json = await read()
    if (isTextBody(json)) return { text: textRequest(json, config) }
    const body = parseBody(ClassifyRequest, json)
    checkSignatureName(body.signature_name)
    return { examples: body }
  }
  let texts: Uint8Array[] = []
  const prediction = await predict(caller, name, selector, parsed, (request): PredictionSpec<unknown> => {
    if ('text' in request)
      return classifyTextSpec(request.text, (texts = textElements(request.text.texts)), config, topK)
    const body = request.examples
    return {
      outputs: ranked.outputs,
      format: ranked.format('results'),
      async feeds(held, feeds) {
        const { transforms } = classifier(held)
        const { signature } = held.lease.model
        const limits = requestLimits(config, held.target)
        if (body.examples.length > limits.maxBatch) {
          throw badRequest(
            `'examples' has ${body.examples.length} entries, more than the limit of ${limits.maxBatch} (${limits.batchRule})`,
          )
        }
        // context holds features shared by every example, as in TF Serving.
        const examples = body.examples.map((example) => ({ ...body.context, ...example }))
        examples.forEach((example, i) => checkInputNames(signature, Object.keys(example), `examples[${i}]`))
        for (const spec of signature.inputs) {
          const column = examples.map((example) => example[spec.name])
          feeds[spec.name] = await jsonFeed(
            spec,
            transforms.get(spec.name),
            column,
            `examples[*]['${spec.name}']`,
            limits,
            config,
            name,
          )
        }
      },
      answer: async (held, outputs) => ({
        results: (await ranked.rank(held, outputs)).map((row) => row.map(({ label, score }) => [label, score])),
      }),
    }
  })
  return { ...prediction, truncated: truncatedTexts(texts) }
}
