/**
 * @module protocols/transforms — the seam between what a client sends for an input and the tensor
 * the model takes, chosen per input by the model's config.json (`inputs.<name>`).
 *
 * Without a transform an input takes numbers (tensors.ts). With one it takes encoded elements —
 * TF Serving's `{"b64": …}`, an Open Inference Protocol BYTES element, a raw request body — and the
 * transform makes the rows. One kind exists, `image` (protocols/images/); a tokenizer for text inputs
 * would be another, and the protocols would not change.
 */
import type { Config } from '../config'
import { ApiError } from '../errors'
import type { ModelConfig } from '../repository/repository'
import type { TensorSpec } from '../runtime/signature'
import type { tf } from '../runtime/tf'
import { imageTransform } from './images/transform'

/** How one input is made from encoded elements. */
export interface InputTransform {
  /** The config key that chose it (`image`). */
  readonly kind: string
  /**
   * The input's tensor, batch first, one row per element. Throws a 4xx naming `where(i)` for an
   * element it cannot use; the tensors of earlier elements are disposed then. An image transform
   * appends each decoded image's size to `sizes` when given (`:detect` maps boxes back onto it).
   */
  tensor(elements: Uint8Array[], where: (index: number) => string, config: Config, sizes?: { width: number; height: number }[]): Promise<tf.Tensor>
}

/**
 * The transforms of a model's inputs, by input name: none for an input config.json does not name.
 * A transform that does not fit its input (a missing input, a shape it cannot fill) is the model's
 * fault, so a 503 naming both — load-time checks (protocols/images/model.ts) find it first.
 */
export function inputTransforms(model: string, config: ModelConfig, inputs: TensorSpec[]): Map<string, InputTransform> {
  const transforms = new Map<string, InputTransform>()
  for (const [name, declared] of Object.entries(config.inputs ?? {})) {
    const spec = inputs.find((s) => s.name === name)
    if (!spec) {
      const known = inputs.map((s) => `'${s.name}'`).join(', ')
      throw new ApiError(503, `${model}/config.json: inputs names '${name}', which the model does not have; its inputs are ${known}`)
    }
    transforms.set(name, imageTransform(model, declared.image, spec))
  }
  return transforms
}
