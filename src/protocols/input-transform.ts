/**
 * @module protocols/input-transform — the interface of an input transform (transforms.ts chooses
 * one per input; images/transform.ts is one): a leaf, so a transform need not import the seam that
 * chooses it.
 */
import type { Config } from '../core/config'
import type { tf } from '../runtime/tf'

/** How one input is made from encoded elements. */
export interface InputTransform {
  /** The config key that chose it (`image` or `text`). */
  readonly kind: string
  /**
   * The input's tensor, batch first, one row per element. Throws a 4xx naming `where(i)` for an
   * element it cannot use; the tensors of earlier elements are disposed then. An image transform
   * appends each decoded image's size to `sizes` when given (`:detect` maps boxes back onto it).
   */
  tensor(
    elements: Uint8Array[],
    where: (index: number) => string,
    config: Config,
    request: RequestBudget,
    sizes?: { width: number; height: number }[],
  ): Promise<tf.Tensor>
}

/** What one request may still spend across all its inputs' transforms: image pixels (MAX_REQUEST_IMAGE_PIXELS). */
export interface RequestBudget {
  imagePixels: { left: number; limit: number }
}
