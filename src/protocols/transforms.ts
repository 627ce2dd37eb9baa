/**
 * @module protocols/transforms — the seam between what a client sends for an input and the tensor
 * the model takes, chosen per input by the model's config.json (`inputs.<name>`).
 *
 * Without a transform an input takes numbers (tensors.ts). With one it takes encoded elements —
 * TF Serving's `{"b64": …}`, an Open Inference Protocol BYTES element, a raw request body — and the
 * transform makes the rows. Two kinds exist: `image` (protocols/images/: encoded images, decoded and
 * resized) and `text` (protocols/text/: UTF-8 texts through the model's tokenizer); the protocols do
 * not tell them apart.
 */
import { ApiError, missingFromModel } from '../core/errors'
import type { ModelConfig } from '../repository/repository'
import type { TensorSpec } from '../runtime/signature'
import { imageTransform } from './images/transform'
import { textTransform } from './text/transform'
import type { TextTokenizer } from './text/tokenizer'
import type { Config } from '../core/config'
import type { InputTransform, RequestBudget } from './input-transform'

export type { InputTransform, RequestBudget }

/** A request's budget, full, for a request without RequestLimits (a raw image body): made once per request, passed to every input's transform. */
export const requestBudget = (config: Config): RequestBudget => ({
  imagePixels: { left: config.MAX_REQUEST_IMAGE_PIXELS, limit: config.MAX_REQUEST_IMAGE_PIXELS },
})

/**
 * The transforms of a model's inputs, by input name: none for an input config.json does not name.
 * A transform that does not fit its input (a missing input, a shape it cannot fill) is the model's
 * fault, so a 503 naming both (errors.ts `configFault`) — the load-time checks (images/classify.ts
 * `prepareModel`) find it first.
 */
export function inputTransforms(
  model: string,
  config: ModelConfig,
  inputs: TensorSpec[],
  tokenizers: ReadonlyMap<string, TextTokenizer> = new Map(),
): Map<string, InputTransform> {
  const transforms = new Map<string, InputTransform>()
  for (const [name, declared] of Object.entries(config.inputs ?? {})) {
    const spec = inputs.find((s) => s.name === name)
    if (!spec)
      throw missingFromModel(
        model,
        'inputs',
        name,
        'input',
        inputs.map((s) => s.name),
      )
    if (declared.image) {
      transforms.set(name, imageTransform(model, declared.image, spec))
    } else if (declared.text) {
      const tokenizer = tokenizers.get(declared.text.tokenizer)
      if (!tokenizer)
        throw new ApiError(503, `${model}: the tokenizer ${declared.text.tokenizer} of input '${name}' is not loaded`)
      transforms.set(name, textTransform(model, declared.text, spec, tokenizer))
    }
  }
  return transforms
}
