/**
 * @module protocols/tf-serving/detect — `:detect`: photos in, labelled boxes out, for a model whose
 * config.json has a `detect` block (docs/detection.md).
 *
 * Transport-neutral (the HTTP route in src/http/routes/tf-serving.ts and the Models binding's `run`
 * call it): one image or TF Serving's JSON with `{"b64": …}` images (`{"instances": […]}` or
 * `{"inputs": …}`), each answered with its detections in Workers AI's shape
 * `[{"label", "score", "box": {"xmin", "ymin", "xmax", "ymax"}}]`. The thresholds a request asks
 * for (`?score_threshold=`, `?iou_threshold=`, `?max_detections=` over HTTP) override the config.
 */
import { readConfig } from '../../core/config'
import { badRequest, describeValue, isObject } from '../../core/errors'
import type { ModelLease } from '../../cache/lease'
import { predict } from '../../predict'
import type { Caller, Prediction, PredictionSpec } from '../../predict'
import type { DetectConfig, ImageTransform } from '../../repository/model-config'
import type { PredictRequest } from '../schemas'
import type { Selector } from '../../repository/repository'
import { base64Bytes, checkBatch, isB64 } from '../encoded'
import { preparedOf } from '../images/classify'
import { detections, detectOptions, detectOutputs } from '../images/detect'
import type { Detection, DetectOptions, ImageGeometry } from '../images/detect'
import { requestLimits } from '../tensors'
import { requestBudget } from '../transforms'
import { oneImageInput } from './classify'

/** What `:detect` needs of a model: its detect block, labels, image input and that input's transform; 400 for a model without detect. */
function detector(held: ModelLease, what: string) {
  const { target } = held
  const detect = target.config.detect
  if (!detect) {
    throw badRequest(
      `model '${target.name}' has no "detect" in its config.json, so it cannot detect; add "detect": {"output": "<tensor>", "columns": "box,score,class"} ` +
        `(or "outputs": {"boxes", "scores", "classes"}) and "labels" (docs/detection.md), or call :predict for its raw outputs`,
    )
  }
  const { labels } = preparedOf(target, held.lease.model)
  const { input, transform } = oneImageInput(held, what, 'a detector takes one image input')
  const image = target.config.inputs![input]!.image
  return { detect, labels: labels!, input, transform, image }
}

/** A request's images: each element's bytes, and where it was in the request for messages. */
export interface Images {
  bytes: Uint8Array[]
  where: (i: number) => string
}

/**
 * Encoded images through the one prediction path (src/predict.ts): the model's one image input gets
 * them as one batch, the answer is each image's detections. What a raw image body, the JSON body and
 * the service binding's `run(model, {image})` share. `decodeMs`: the decoding and preprocessing
 * time, absent when the prediction cache answered.
 */
export async function detectImages(
  caller: Caller,
  name: string,
  selector: Selector,
  read: () => Promise<Images | ((held: ModelLease, input: string) => Images)>,
  asked: Partial<DetectOptions>,
  what = 'an image',
): Promise<Prediction<Detection[][]> & { decodeMs?: number }> {
  const config = readConfig(caller.env)
  let sizes: ImageGeometry[] = []
  let decodeMs: number | undefined
  const prediction = await predict(caller, name, selector, read, (given): PredictionSpec<Detection[][]> => {
    // The images are taken once the model is known (a JSON body names its input), the same for the key and the feeds.
    let images: Images | undefined
    const plan = (held: ModelLease) => {
      const found = detector(held, what)
      images ??= typeof given === 'function' ? given(held, found.input) : given
      checkBatch(
        images.bytes.length,
        images.bytes.length > 1 ? 'the images' : 'the image',
        requestLimits(config, held.target),
      )
      return { ...found, images, options: detectOptions(found.detect, asked) }
    }
    return {
      outputs: (held) => detectOutputs(plan(held).detect),
      format: (held) => {
        const { options } = plan(held)
        return `detect;score=${options.score_threshold};iou=${options.iou_threshold};max=${options.max_detections}`
      },
      // Keyed by the encoded bytes: the boxes depend on each image's size as sent, which the input tensor does not keep.
      keyInputs: (held) => {
        const { input, images } = plan(held)
        return Object.fromEntries(
          images.bytes.map((bytes, i) => [`${input}[${i}]`, { dtype: 'encoded-image', shape: [1], bytes }]),
        )
      },
      async feeds(held, feeds) {
        const { input, transform, images } = plan(held)
        const decoding = Date.now()
        sizes = []
        feeds[input] = await transform.tensor(images.bytes, images.where, config, requestBudget(config), sizes)
        decodeMs = Date.now() - decoding
      },
      answer: async (held, outputs) => {
        const { detect, labels, image, options } = plan(held)
        return detections(outputs, detect as DetectConfig, labels, image as ImageTransform, sizes, options, name)
      },
    }
  })
  return { ...prediction, ...(decodeMs !== undefined ? { decodeMs } : {}) }
}

/**
 * The images of a TF Serving JSON body for the image input `input`: `{"instances": [{"b64": …}, …]}`
 * (or each instance `{"<input>": {"b64": …}}`), or `{"inputs": {"b64": …} | [{"b64": …}, …] | {"<input>": …}}`.
 */
export function jsonImages(body: PredictRequest, input: string, maxBytes: number): Images {
  const named = (value: unknown, where: string): [unknown, string] =>
    isObject(value) && !isB64(value) && Object.hasOwn(value, input)
      ? [value[input], `${where}['${input}']`]
      : [value, where]
  let entries: [unknown, string][]
  if (body.instances !== undefined) {
    entries = body.instances.map((instance, i) => named(instance, `instances[${i}]`))
  } else {
    const [value, where] = named(body.inputs, 'inputs')
    entries = Array.isArray(value) ? value.map((v, i) => [v, `${where}[${i}]`]) : [[value, where]]
  }
  const bytes = entries.map(([value, where]) => {
    if (!isB64(value))
      throw badRequest(
        `${where}: expected an encoded image as {"b64": "…"} (for input '${input}'), got ${describeValue(value)}`,
      )
    return base64Bytes(value.b64, `${where}.b64`, maxBytes)
  })
  return { bytes, where: (i) => entries[i]![1] }
}
