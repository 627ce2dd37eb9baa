/**
 * @module http/routes/tf-serving — TF Serving's REST API, so its clients work unchanged. Each
 * route reads its path and body and writes the answer of the transport-neutral core
 * (protocols/tf-serving/dataplane.ts and classify.ts), which the service binding calls too.
 * @see https://www.tensorflow.org/tfx/serving/api_rest
 */
import { Hono } from 'hono'
import type { Context } from 'hono'
import { readConfig } from '../../core/config'
import { ApiError, badRequest, notFound, quote } from '../../core/errors'
import { readBytes, readJson } from '../body'
import { asCaller, callerOf, methodNotAllowed, refuseOtherMethods, setPredictionHeaders } from '../common'
import type { AppEnv } from '../common'
import { routeDocs } from '../openapi'
import type { Prediction } from '../../predict'
import type { Selector } from '../../repository/repository'
import { IMAGE_TYPES } from '../../protocols/images/decode'
import { readTensorJson, TF_SERVING_TENSORS } from '../../protocols/json-tensors'
import { parseBody, PredictRequest } from '../../protocols/schemas'
import { parseLabel, parseVersion } from '../../protocols/selector'
import { embedTexts, readTexts } from '../../protocols/text/tasks'
import { classifyExamples, classifyImage } from '../../protocols/tf-serving/classify'
import { detectImages, jsonImages } from '../../protocols/tf-serving/detect'
import type { Images } from '../../protocols/tf-serving/detect'
import { askedDetectOptions } from '../../protocols/images/detect'
import type { ModelLease } from '../../cache/lease'
import {
  checkSignatureName,
  modelMetadataTF,
  modelStatusTF,
  predictInput,
  predictTFServing,
} from '../../protocols/tf-serving/dataplane'

type Ctx = Context<AppEnv>

/** The verbs a model's path takes, POST only. */
const VERBS = ['predict', 'classify', 'detect', 'embed']

/** Splits `iris:predict` into the model name and its verb. */
function splitVerb(segment: string): { name: string; verb?: string } {
  const at = segment.lastIndexOf(':')
  return at === -1 ? { name: segment } : { name: segment.slice(0, at), verb: segment.slice(at + 1) }
}

/** How a path names the version: `versions/{v}`, `labels/{l}`, or not at all (the default version). */
type VersionPath = { kind: 'versions' | 'labels'; segment: string } | undefined

function selectorOf(pick: VersionPath): Selector {
  if (!pick) return {}
  return pick.kind === 'versions' ? { version: parseVersion(pick.segment) } : { label: parseLabel(pick.segment) }
}

async function status(c: Ctx, name: string, pick?: VersionPath) {
  const verb = splitVerb(pick?.segment ?? name).verb
  if (verb !== undefined) {
    if (VERBS.includes(verb)) return methodNotAllowed('POST')(c)
    throw notFound(`no route for GET ${new URL(c.req.url).pathname}`)
  }
  const { body, headers } = await modelStatusTF(callerOf(c), name, selectorOf(pick), pick !== undefined)
  return c.json(body, 200, headers)
}

const metadata = async (c: Ctx, name: string, pick?: VersionPath) =>
  c.json(await modelMetadataTF(callerOf(c), name, selectorOf(pick)))

async function predictBody(c: Ctx, name: string, pick?: VersionPath) {
  const config = readConfig(c.env)
  const prediction = await asCaller(c, name, (caller) =>
    predictTFServing(caller, name, selectorOf(pick), async () => {
      const json = await readJson(
        c.req.raw,
        config.MAX_BODY_BYTES,
        (bytes) => readTensorJson(bytes, TF_SERVING_TENSORS, config.MAX_TENSOR_ELEMENTS),
        config.BODY_READ_TIMEOUT_MS,
      )
      return predictInput(json, (value) => parseBody(PredictRequest, value))
    }),
  )
  setPredictionHeaders(c, prediction)
  return c.json(prediction.value)
}

// ===== Classify =====

const IMAGE_CONTENT_TYPES: readonly string[] = Object.values(IMAGE_TYPES)

/** `?top_k=N` checked: a positive integer, or `undefined` when not given. */
function askedTopK(c: Ctx): number | undefined {
  const asked = c.req.query('top_k')
  if (asked === undefined) return undefined
  if (!/^[1-9][0-9]{0,5}$/.test(asked)) throw badRequest(`top_k ${quote(asked)} is not a positive integer`)
  return Number(asked)
}

/** A raw image body: the model's one image input gets it; the answer is the top-k list. */
/** A raw image body's bytes, within MAX_IMAGE_BYTES and MAX_BODY_BYTES (413 naming the lower) and BODY_READ_TIMEOUT_MS. */
function readImageBody(c: Ctx): Promise<Uint8Array> {
  const config = readConfig(c.env)
  return readBytes(
    c.req.raw,
    Math.min(config.MAX_BODY_BYTES, config.MAX_IMAGE_BYTES),
    0,
    config.BODY_READ_TIMEOUT_MS,
  ).catch((error: unknown) => {
    if (error instanceof ApiError && error.status === 413) {
      const limit =
        config.MAX_IMAGE_BYTES <= config.MAX_BODY_BYTES
          ? `${config.MAX_IMAGE_BYTES} bytes (MAX_IMAGE_BYTES)`
          : `${config.MAX_BODY_BYTES} bytes (MAX_BODY_BYTES)`
      throw new ApiError(413, `the image body exceeds the limit of ${limit}`)
    }
    throw error
  })
}

/**
 * The image content type of a request's body, or undefined for anything else (JSON); 415 for an
 * image type not served. `json` names the JSON request the verb takes, for the message.
 */
function imageBodyType(c: Ctx, json: string): string | undefined {
  const type = c.req.header('content-type')?.split(';')[0]?.trim().toLowerCase()
  if (type && IMAGE_CONTENT_TYPES.includes(type)) return type
  if (type?.startsWith('image/')) {
    throw new ApiError(
      415,
      `content type '${type}' is not supported: send ${IMAGE_CONTENT_TYPES.join(', ')}, or ${json} as application/json`,
    )
  }
  return undefined
}

async function classifyRaw(c: Ctx, name: string, selector: Selector, type: string) {
  const topK = askedTopK(c)
  const prediction = await asCaller(c, name, (caller) =>
    classifyImage(caller, name, selector, () => readImageBody(c), topK, type),
  )
  if (prediction.decodeMs !== undefined) c.set('decodeMs', prediction.decodeMs)
  setPredictionHeaders(c, prediction)
  return c.json(prediction.value)
}

/** POST `…:classify`: a raw image or TF Serving's classify request, told apart by the content type. */
async function classify(c: Ctx, name: string, selector: Selector) {
  const type = imageBodyType(c, "TF Serving's classify request")
  if (type) return classifyRaw(c, name, selector, type)
  const config = readConfig(c.env)
  const prediction = await asCaller(c, name, (caller) =>
    classifyExamples(
      caller,
      name,
      selector,
      () => readJson(c.req.raw, config.MAX_BODY_BYTES, undefined, config.BODY_READ_TIMEOUT_MS),
      askedTopK(c),
    ),
  )
  setTextHeaders(c, prediction)
  return c.json(prediction.value)
}

/** A text answer's headers: the prediction's, and how many texts were cut to `max_length` tokens. */
function setTextHeaders(c: Ctx, prediction: Prediction<unknown> & { truncated: number }) {
  setPredictionHeaders(c, prediction)
  if (prediction.truncated > 0) c.header('X-Truncated', String(prediction.truncated))
}

/** POST `…:detect`: a raw image, or TF Serving's JSON of b64 images, told apart by the content type (protocols/tf-serving/detect.ts). */
async function detect(c: Ctx, name: string, selector: Selector) {
  const config = readConfig(c.env)
  const raw = imageBodyType(c, 'TF Serving\'s {"instances": [{"b64": …}]}')
  const asked = askedDetectOptions((key) => c.req.query(key), 'query parameter ')
  const read = async (): Promise<Images | ((held: ModelLease, input: string) => Images)> => {
    if (raw) return { bytes: [await readImageBody(c)], where: () => 'request body' }
    const body = parseBody(
      PredictRequest,
      await readJson(c.req.raw, config.MAX_BODY_BYTES, undefined, config.BODY_READ_TIMEOUT_MS),
    )
    checkSignatureName(body.signature_name)
    return (_held, input) => jsonImages(body, input, config.MAX_IMAGE_BYTES)
  }
  const prediction = await asCaller(c, name, (caller) =>
    detectImages(caller, name, selector, read, asked, raw ? `a raw ${raw} body` : 'b64 images'),
  )
  if (prediction.decodeMs !== undefined) c.set('decodeMs', prediction.decodeMs)
  setPredictionHeaders(c, prediction)
  return c.json(raw ? prediction.value[0]! : { results: prediction.value })
}

/** POST `…:embed`: `{"text": string|string[]}` → `{"shape": [n, d], "data": […], "pooling": …}` (protocols/text/tasks.ts). */
async function embed(c: Ctx, name: string, selector: Selector) {
  const config = readConfig(c.env)
  const read = async () => {
    const body = await readJson(c.req.raw, config.MAX_BODY_BYTES, undefined, config.BODY_READ_TIMEOUT_MS)
    if (typeof body !== 'object' || body === null || Array.isArray(body) || !('text' in body))
      throw badRequest(`:embed takes {"text": "…"} or {"text": ["…", …]}`)
    return readTexts(body.text, 'text', config).texts
  }
  const prediction = await asCaller(c, name, (caller) => embedTexts(caller, name, selector, read))
  setTextHeaders(c, prediction)
  return c.json(prediction.value)
}

// ===== Routes =====

const versions = (c: Ctx): VersionPath => ({ kind: 'versions', segment: c.req.param('version')! })
const labels = (c: Ctx): VersionPath => ({ kind: 'labels', segment: c.req.param('label')! })

export const tfServing = refuseOtherMethods(
  new Hono<AppEnv>()
    // `:target`, as the predict route's: one path with two names would make Hono route with its trie
    // router, which searches every route on each request, instead of its one regular expression.
    .get('/v1/models/:target', routeDocs.tfStatus, (c) => status(c, c.req.param('target')))
    .get('/v1/models/:name/versions/:version', routeDocs.tfStatusVersion, (c) =>
      status(c, c.req.param('name'), versions(c)),
    )
    .get('/v1/models/:name/labels/:label', routeDocs.tfStatusLabel, (c) => status(c, c.req.param('name'), labels(c)))
    .get('/v1/models/:name/metadata', routeDocs.tfMetadata, (c) => metadata(c, c.req.param('name')))
    .get('/v1/models/:name/versions/:version/metadata', routeDocs.tfMetadataVersion, (c) =>
      metadata(c, c.req.param('name'), versions(c)),
    )
    .get('/v1/models/:name/labels/:label/metadata', routeDocs.tfMetadataLabel, (c) =>
      metadata(c, c.req.param('name'), labels(c)),
    )
    .post('/v1/models/:target', routeDocs.tfPredict, (c) => predictRoute(c, c.req.param('target')))
    .post('/v1/models/:name/versions/:version', routeDocs.tfPredictVersion, (c) =>
      predictRoute(c, c.req.param('name'), versions(c)),
    )
    .post('/v1/models/:name/labels/:label', routeDocs.tfPredictLabel, (c) =>
      predictRoute(c, c.req.param('name'), labels(c)),
    ),
  {
    '/v1/models/:name/metadata': 'GET',
    '/v1/models/:name/versions/:version/metadata': 'GET',
    '/v1/models/:name/labels/:label/metadata': 'GET',
    '/v1/models/:target': 'GET, POST',
    '/v1/models/:name/versions/:version': 'GET, POST',
    '/v1/models/:name/labels/:label': 'GET, POST',
  },
)

/**
 * POST on `{name}:predict`, or on `versions/{v}:predict` / `labels/{l}:predict`: the verb ends the
 * last path segment, which is the model's name, or the version or label when `pick` says so.
 */
function predictRoute(c: Ctx, model: string, pick?: VersionPath) {
  const { name: last, verb } = splitVerb(pick?.segment ?? model)
  if (verb === undefined) return methodNotAllowed('GET')(c)
  if (!VERBS.includes(verb))
    throw notFound(`':${verb}' is not supported; warmserve serves ${VERBS.map((v) => `':${v}'`).join(', ')}`)
  const [name, version] = pick === undefined ? [last, undefined] : [model, { kind: pick.kind, segment: last }]
  if (verb === 'embed') return embed(c, name, selectorOf(version))
  if (verb === 'detect') return detect(c, name, selectorOf(version))
  return verb === 'classify' ? classify(c, name, selectorOf(version)) : predictBody(c, name, version)
}
