/**
 * @module protocols/tf-serving/text — texts over HTTP: `:classify` with `{"text": …}` or
 * `{"instances": […]}` on a text classifier, and `:embed`. The answers are Workers AI's shapes
 * (`[{label, score}]`, `{shape, data, pooling}`), TF Serving's `{"results": …}` for `instances`.
 * Texts cut to a model's `max_length` tokens are counted in `X-Truncated`.
 */
import type { Context } from 'hono'
import { readConfig } from '../../config'
import { badRequest } from '../../errors'
import { readJson } from '../../http/body'
import { setPredictionHeaders, withTrafficSlot } from '../../http/common'
import type { AppEnv } from '../../http/common'
import type { Caller } from '../../predict'
import type { Selector } from '../../repository/repository'
import { classifyTexts, embedTexts, readTexts } from '../text/tasks'
import type { TextPrediction } from '../text/tasks'

type Body = Record<string, unknown>

const isBody = (value: unknown): value is Body => typeof value === 'object' && value !== null && !Array.isArray(value)

/** Whether a parsed `:classify` body is a text request: `text`, or `instances` (TF Serving's classify body has `examples`). */
export const isTextBody = (body: unknown): body is Body => isBody(body) && !('examples' in body) && ('text' in body || 'instances' in body)

/** Sets what every text answer carries: the prediction's headers and, when texts were cut, how many. */
function answered<T>(c: Context<AppEnv>, prediction: TextPrediction<T>) {
  setPredictionHeaders(c, prediction)
  if (prediction.truncated > 0) c.header('X-Truncated', String(prediction.truncated))
}

/**
 * TF Serving's row form for a text model: each instance a string, or an object of the model's
 * text-fed inputs all holding that row's one text.
 */
function instanceTexts(instances: unknown): string[] {
  if (!Array.isArray(instances)) throw badRequest(`'instances' must be a list of texts`)
  return instances.map((instance, i) => {
    if (typeof instance === 'string' || !isBody(instance)) return instance as string
    const values = Object.entries(instance)
    if (values.length === 0) throw badRequest(`'instances[${i}]' is an empty object: send the row's text`)
    const [[firstName, text]] = values as [[string, unknown]]
    for (const [input, other] of values) {
      if (other !== text) throw badRequest(`'instances[${i}]': a text model takes one text per row, but '${firstName}' and '${input}' differ`)
    }
    return text as string
  })
}

/** `:classify` on a text model: `{"text": string|string[]}` (Workers AI) or `{"instances": […]}` (TF Serving). */
export async function classifyTextBody(c: Context<AppEnv>, caller: Caller, name: string, selector: Selector, body: Body, topK: number | undefined) {
  const config = readConfig(c.env)
  const field = 'text' in body ? 'text' : 'instances'
  const { texts, single } = readTexts(field === 'text' ? body.text : instanceTexts(body.instances), field, config)
  const prediction = await classifyTexts(caller, name, selector, texts, topK, field)
  answered(c, prediction)
  const ranked = prediction.value
  if (field === 'instances') return c.json({ results: ranked.map((row) => row.map(({ label, score }) => [label, score])) })
  return c.json(single ? ranked[0]! : ranked)
}

/** POST `…:embed`: `{"text": string|string[]}` → `{"shape": [n, d], "data": […], "pooling": …}`. */
export function embed(c: Context<AppEnv>, name: string, selector: Selector) {
  const config = readConfig(c.env)
  return withTrafficSlot(c, name, selector, async (caller) => {
    const body = await readJson(c.req.raw, config.MAX_BODY_BYTES)
    if (!isBody(body) || !('text' in body)) throw badRequest(`:embed takes {"text": "…"} or {"text": ["…", …]}`)
    const { texts } = readTexts(body.text, 'text', config)
    const prediction = await embedTexts(caller, name, selector, texts)
    answered(c, prediction)
    return c.json(prediction.value)
  })
}
