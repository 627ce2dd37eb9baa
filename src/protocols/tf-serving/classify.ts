/**
 * @module protocols/tf-serving/classify — `:classify`: an image in, the model's top-k labels out.
 *
 * Two bodies: a raw image (`Content-Type: image/jpeg|png|webp`), answered in Workers AI's shape
 * `[{"label", "score"}]`; or TF Serving's classify request `{"examples": [{input: {"b64": …}}]}`,
 * answered in its shape `{"results": [[[label, score], …]]}`. `?top_k=N` overrides config.json.
 * @see https://www.tensorflow.org/tfx/serving/api_rest#classify_and_regress_api
 */
import type { Context } from 'hono'
import { z } from 'zod'
import { readConfig } from '../../config'
import { ApiError, badRequest, quote } from '../../errors'
import { readBytes, readJson } from '../../http/body'
import { checkInputNames, setPredictionHeaders, withTrafficSlot } from '../../http/common'
import type { AppEnv } from '../../http/common'
import type { ModelLease } from '../../isolate'
import { predict } from '../../predict'
import type { Caller, Prediction } from '../../predict'
import type { Selector } from '../../repository/repository'
import { DEFAULT_SIGNATURE } from '../../runtime/signature'
import { tf } from '../../runtime/tf'
import { jsonFeed } from '../encoded'
import { preparedOf, rank } from '../images/classify'
import type { Prepared, Ranked } from '../images/classify'
import type { InputTransform } from '../transforms'
import { IMAGE_TYPES } from '../images/decode'
import { parseBody } from '../schemas'
import { requestLimits } from '../tensors'

/** TF Serving's classify request, with each example's features keyed by input name. */
const ClassifyRequest = z.object({
  signature_name: z.string().optional(),
  context: z.record(z.string(), z.unknown()).optional(),
  examples: z.array(z.record(z.string(), z.unknown()), { error: "'examples' must be a list of objects keyed by input name" }).min(1, "'examples' is empty: send at least one"),
})

const IMAGE_CONTENT_TYPES: readonly string[] = Object.values(IMAGE_TYPES)

/** `?top_k=N` checked: a positive integer, or `undefined` when not given. */
function askedTopK(c: Context<AppEnv>): number | undefined {
  const asked = c.req.query('top_k')
  if (asked === undefined) return undefined
  if (!/^[1-9][0-9]{0,5}$/.test(asked)) throw badRequest(`top_k ${quote(asked)} is not a positive integer`)
  return Number(asked)
}

/** The labels and output to rank, or 400 for a model without labels. */
function classifier(held: ModelLease): Prepared & { labels: string[]; output: string } {
  const prepared = preparedOf(held.target, held.lease.model)
  if (!prepared.labels || !prepared.output) {
    throw badRequest(`model '${held.target.name}' has no labels, so it cannot classify; add "labels" to its config.json, or call :predict`)
  }
  return prepared as Prepared & { labels: string[]; output: string }
}

/** The model's one image input and its transform, or 400 saying why `what` (a raw image body…) cannot go to it, and what to do instead. */
export function oneImageInput(held: ModelLease, what: string, instead: string): { input: string; transform: InputTransform } {
  const { transforms } = preparedOf(held.target, held.lease.model)
  const inputs = held.lease.model.signature.inputs
  const transform = inputs.length === 1 ? transforms.get(inputs[0]!.name) : undefined
  if (!transform) {
    const why = inputs.length === 1 ? `input '${inputs[0]!.name}' has no image preprocessing (inputs.${inputs[0]!.name}.image in its config.json)` : `it has ${inputs.length} inputs`
    throw badRequest(`model '${held.target.name}' cannot take ${what}: ${why}; ${instead}`)
  }
  return { input: inputs[0]!.name, transform }
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
      rank(outputs[classifier(held).output]!, classifier(held).labels, k(held), held.target.config.classify?.activation ?? 'none', held.target.name),
    format: (shape: string) => (held: ModelLease) => `classify-${shape};top_k=${k(held)}`,
  }
}

/**
 * One encoded image through the one prediction path (src/predict.ts): the model's one image input
 * gets it, the answer is the top-k list, `[{label, score}]`. What a raw image body to `:classify` and
 * the service binding's `run(model, {image})` share. `what` names the image in messages. `decodeMs`:
 * the time decoding and preprocessing took, absent when the prediction cache answered.
 */
export async function classifyImage(
  caller: Caller,
  name: string,
  selector: Selector,
  bytes: Uint8Array,
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
  const prediction = await predict<Ranked[]>(caller, name, selector, {
    outputs: ranked.outputs,
    format: ranked.format('ranked'),
    // Keyed by the encoded bytes: a hit neither decodes nor resizes the image.
    keyInputs: (held) => ({ [imageInput(held).input]: { dtype: 'encoded-image', shape: [1], bytes } }),
    async feeds(held, feeds) {
      const { input, transform } = imageInput(held)
      const decoding = Date.now()
      feeds[input] = await transform.tensor([bytes], () => 'request body', config)
      decodeMs = Date.now() - decoding
    },
    answer: async (held, outputs) => (await ranked.rank(held, outputs))[0]!,
  })
  return { ...prediction, ...(decodeMs !== undefined ? { decodeMs } : {}) }
}

/** A raw image body's bytes, within MAX_IMAGE_BYTES and MAX_BODY_BYTES: 413 naming the lower. */
export function readImageBody(c: Context<AppEnv>): Promise<Uint8Array> {
  const config = readConfig(c.env)
  return readBytes(c.req.raw, Math.min(config.MAX_BODY_BYTES, config.MAX_IMAGE_BYTES)).catch((error: unknown) => {
    if (error instanceof ApiError && error.status === 413) {
      const limit = config.MAX_IMAGE_BYTES <= config.MAX_BODY_BYTES ? `${config.MAX_IMAGE_BYTES} bytes (MAX_IMAGE_BYTES)` : `${config.MAX_BODY_BYTES} bytes (MAX_BODY_BYTES)`
      throw new ApiError(413, `the image body exceeds the limit of ${limit}`)
    }
    throw error
  })
}

/**
 * The image content type of a request's body, or undefined for anything else (JSON); 415 for an
 * image type not served. `json` names the JSON request the verb takes, for the message.
 */
export function imageBodyType(c: Context<AppEnv>, json: string): string | undefined {
  const type = c.req.header('content-type')?.split(';')[0]?.trim().toLowerCase()
  if (type && IMAGE_CONTENT_TYPES.includes(type)) return type
  if (type?.startsWith('image/')) {
    throw new ApiError(415, `content type '${type}' is not supported: send ${IMAGE_CONTENT_TYPES.join(', ')}, or ${json} as application/json`)
  }
  return undefined
}

/** A raw image body: the model's one image input gets it; the answer is the top-k list. */
async function classifyRaw(c: Context<AppEnv>, name: string, selector: Selector, type: string) {
  const topK = askedTopK(c)
  return withTrafficSlot(c, name, selector, async (caller) => {
    const bytes = await readImageBody(c)
    const prediction = await classifyImage(caller, name, selector, bytes, topK, type)
    if (prediction.decodeMs !== undefined) c.set('decodeMs', prediction.decodeMs)
    setPredictionHeaders(c, prediction)
    return c.json(prediction.value)
  })
}

/** TF Serving's classify request: each example's inputs, b64 or numbers, batched in order. */
async function classifyExamples(c: Context<AppEnv>, name: string, selector: Selector) {
  const config = readConfig(c.env)
  return withTrafficSlot(c, name, selector, async (caller) => {
    const body = parseBody(ClassifyRequest, await readJson(c.req.raw, config.MAX_BODY_BYTES))
    if (body.signature_name !== undefined && body.signature_name !== DEFAULT_SIGNATURE) {
      throw badRequest(`signature ${quote(body.signature_name)} not found; the model serves '${DEFAULT_SIGNATURE}'`)
    }
    const ranked = ranking(askedTopK(c))
    const prediction = await predict(caller, name, selector, {
      outputs: ranked.outputs,
      format: ranked.format('results'),
      async feeds(held, feeds) {
        const { transforms } = classifier(held)
        const { signature } = held.lease.model
        const limits = requestLimits(config, held.target)
        if (body.examples.length > limits.maxBatch) {
          throw badRequest(`'examples' has ${body.examples.length} entries, more than the limit of ${limits.maxBatch} (${limits.batchRule})`)
        }
        // context holds features shared by every example, as in TF Serving.
        const examples = body.examples.map((example) => ({ ...body.context, ...example }))
        examples.forEach((example, i) => checkInputNames(signature, Object.keys(example), `examples[${i}]`))
        for (const spec of signature.inputs) {
          const column = examples.map((example) => example[spec.name])
          feeds[spec.name] = await jsonFeed(spec, transforms.get(spec.name), column, `examples[*]['${spec.name}']`, limits, config, name)
        }
      },
      answer: async (held, outputs) => ({ results: (await ranked.rank(held, outputs)).map((row) => row.map(({ label, score }) => [label, score])) }),
    })
    setPredictionHeaders(c, prediction)
    return c.json(prediction.value)
  })
}

/** POST `…:classify`: a raw image or TF Serving's classify request, told apart by the content type. */
export function classify(c: Context<AppEnv>, name: string, selector: Selector) {
  const type = imageBodyType(c, "TF Serving's classify request")
  return type ? classifyRaw(c, name, selector, type) : classifyExamples(c, name, selector)
}
