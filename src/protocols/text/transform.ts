/**
 * @module protocols/text/transform — the `text` input transform: UTF-8 texts in, one row of token ids
 * (or attention mask, or token type ids) each.
 *
 * The inputs a model feeds from one tokenizer share one encoding per request: the first input to ask
 * encodes the texts, the others take their field of the same encoding (kept for the elements array
 * the protocol hands every input, and dropped with it).
 */
import type { Config } from '../../core/config'
import { ApiError, badRequest } from '../../core/errors'
import type { TextTransform } from '../../repository/model-config'
import type { TensorSpec } from '../../runtime/signature'
import { formatShape } from '../../runtime/signature'
import { tf } from '../../runtime/tf'
import type { InputTransform } from '../input-transform'
import { reservedTensor } from '../../cache/memory-gate'
import { inputWhat } from '../tensors'
import type { TextBatch, TextTokenizer } from './tokenizer'

/** Why a text transform cannot fill `spec`, or undefined when it can: an int32 (or float32) `[n, tokens]` input. */
export function textMisfit(text: TextTransform, spec: TensorSpec): string | undefined {
  if (spec.dtype !== 'int32' && spec.dtype !== 'float32')
    return `input '${spec.name}' is ${spec.dtype}; token ids fill int32 or float32`
  if (spec.shape === null) return undefined
  if (spec.shape.length !== 2)
    return `input '${spec.name}' has shape ${formatShape(spec.shape)}; a text makes [n, tokens]`
  const tokens = spec.shape[1]!
  if (tokens !== -1 && text.padding === 'longest')
    return `input '${spec.name}' takes exactly ${tokens} tokens; padding "longest" needs [n, -1]`
  if (tokens !== -1 && tokens !== text.max_length)
    return `input '${spec.name}' takes ${tokens} tokens; max_length is ${text.max_length}`
  return undefined
}

/** What metadata shows for a text input: the content it takes and its tokenization. */
export const textParameters = (text: TextTransform) => ({ content_types: ['text/plain; charset=utf-8'], text })

// One encoding per (elements array, tokenizer): the inputs a request feeds from the same texts share it.
const encodings = new WeakMap<readonly Uint8Array[], Map<TextTokenizer, TextBatch>>()

/** The encoding an input made of these texts (the first tokenizer's), once one has; undefined before. */
export function batchOf(elements: readonly Uint8Array[]): TextBatch | undefined {
  return encodings.get(elements)?.values().next().value
}

/** How many of these texts lost tokens to `max_length`, once an input has encoded them; 0 before. */
export function truncatedTexts(elements: readonly Uint8Array[]): number {
  let most = 0
  for (const batch of encodings.get(elements)?.values() ?? []) most = Math.max(most, batch.truncated)
  return most
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false })

/** The texts of `elements`, each checked: valid UTF-8, at most MAX_TEXT_BYTES. */
function decodeTexts(elements: readonly Uint8Array[], where: (index: number) => string, config: Config): string[] {
  return elements.map((bytes, i) => {
    if (bytes.byteLength > config.MAX_TEXT_BYTES) {
      throw new ApiError(
        413,
        `${where(i)}: the text is ${bytes.byteLength} bytes, more than the limit of ${config.MAX_TEXT_BYTES} (MAX_TEXT_BYTES)`,
      )
    }
    try {
      return utf8.decode(bytes)
    } catch {
      throw badRequest(`${where(i)}: not valid UTF-8 text`)
    }
  })
}

/** The transform that tokenizes each element into one row of `spec`'s `text.field`. */
export function textTransform(
  model: string,
  text: TextTransform,
  spec: TensorSpec,
  tokenizer: TextTokenizer,
): InputTransform {
  const problem = textMisfit(text, spec)
  if (problem) throw new ApiError(503, `${model}/config.json: inputs.${spec.name}.text does not fit: ${problem}`)
  return {
    kind: 'text',
    async tensor(elements, where, config: Config) {
      let shared = encodings.get(elements)
      if (!shared) encodings.set(elements, (shared = new Map()))
      let batch = shared.get(tokenizer)
      if (!batch) {
        batch = tokenizer.encode(decodeTexts(elements, where, config), text.max_length, text.padding)
        shared.set(tokenizer, batch)
      }
      const dtype = spec.dtype === 'float32' ? 'float32' : 'int32'
      const shape: [number, number] = [batch.rows, batch.length]
      // Reserved in the memory budget before it is made, as every input tensor (cache/memory-gate.ts).
      return reservedTensor(batch.rows * batch.length * 4, inputWhat(`input '${spec.name}'`, shape, dtype), () =>
        tf.tensor2d(batch.fields[text.field], shape, dtype),
      )
    },
  }
}
