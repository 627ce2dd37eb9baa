/**
 * @module protocols/transforms — the seam between what a client sends for an input and the tensor
 * the model takes, chosen per input by the model's config.json (`inputs.<name>`).
 *
 * Without a transform an input takes numbers (tensors.ts). With one it takes encoded elements —
 * TF Serving's `{"b64": …}`, an Open Inference Protocol BYTES element, a raw request body — and the
 * transform makes the rows. One kind exists, `image` (protocols/images/); a tokenizer for text inputs
 * would be another, and the protocols would not change.
 */
import { missingFromModel } from '../errors'
import type { ModelConfig } from '../repository/repository'
import type { TensorSpec } from '../runtime/signature'
import { imageTransform } from './images/transform'
import type { InputTransform } from './input-transform'

export type { InputTransform }

/**
 * The transforms of a model's inputs, by input name: none for an input config.json does not name.
 * A transform that does not fit its input (a missing input, a shape it cannot fill) is the model's
 * fault, so a 503 naming both (errors.ts `configFault`) — the load-time checks (images/classify.ts
 * `prepareModel`) find it first.
 */
export function inputTransforms(model: string, config: ModelConfig, inputs: TensorSpec[]): Map<string, InputTransform> {
  const transforms = new Map<string, InputTransform>()
  for (const [name, declared] of Object.entries(config.inputs ?? {})) {
    const spec = inputs.find((s) => s.name === name)
    if (!spec) throw missingFromModel(model, 'inputs', name, 'input', inputs.map((s) => s.name))
    transforms.set(name, imageTransform(model, declared.image, spec))
  }
  return transforms
}
