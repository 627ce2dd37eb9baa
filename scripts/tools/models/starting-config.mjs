// A first config.json for a model brought in by `npm run add-model` (and the zoo): an `image` block for
// every input shaped like an image, and a description saying what to check, since a model file does not
// say what pixel range, normalisation or labels it was trained with.

/** `{ size, channels }` for an NHWC image input (`[-1|1, h, w, 1|3]`), else undefined. */
export function imageShape(shape) {
  if (!Array.isArray(shape) || shape.length !== 4) return undefined
  const [batch, h, w, c] = shape
  if (!(batch === -1 || batch === 1) || !(h > 0 && w > 0) || !(c === 1 || c === 3)) return undefined
  return { size: [h, w], channels: c }
}

/** Whether an input is shaped like an NCHW image (`[-1|1, 1|3, h, w]`): the image transform makes NHWC rows only. */
export const isChannelsFirst = (shape) =>
  Array.isArray(shape) &&
  shape.length === 4 &&
  (shape[0] === -1 || shape[0] === 1) &&
  (shape[1] === 1 || shape[1] === 3) &&
  shape[2] > 3 &&
  shape[3] > 3 &&
  shape[3] !== 3

/**
 * The config and the notes to print. `signature` is build-index's declared signature
 * (`{ inputs: [{ name, dtype, shape }] }`); `labels` an optional class list.
 */
export function startingConfig(signature, { source, labels, json } = {}) {
  const config = {}
  const notes = []
  const inputs = {}
  // The Worker names the inputs of a graph model without a signature block after their tensors
  // (`input:0`), where build-index's signature has the placeholder's name (`input`).
  const tensorNames = json && !json.signature && Array.isArray(json.modelTopology?.node)
  for (const declared of signature?.inputs ?? []) {
    const input = tensorNames && !declared.name.includes(':') ? { ...declared, name: `${declared.name}:0` } : declared
    const image = input.dtype === 'float32' || input.dtype === 'DT_FLOAT' ? imageShape(input.shape) : undefined
    if (image) {
      // [0, 1] is the commonest convention of TF.js image models; a guess the user must check.
      inputs[input.name] = { image: { size: image.size, channels: image.channels, range: [0, 1] } }
      notes.push(
        `input ${input.name} takes images: ${image.size[0]}×${image.size[1]}, ${image.channels} channel(s), pixels mapped to [0, 1]: check the range (e.g. [-1, 1]), mean and std the model was trained with`,
      )
    } else if (isChannelsFirst(input.shape)) {
      notes.push(
        `input ${input.name} is channels-first [${input.shape.join(', ')}]: the image transform makes channels-last rows, so send it tensors`,
      )
    } else {
      notes.push(
        `input ${input.name}: ${input.dtype ?? 'float32'} [${(input.shape ?? ['?']).join(', ')}], sent as tensors`,
      )
    }
  }
  if (Object.keys(inputs).length > 0) config.inputs = inputs
  if (labels) config.labels = labels
  else notes.push('no labels: add "labels" (class names in the order of the output) for :classify')
  config.description = `Brought in from ${source ?? 'a TF.js model'} by npm run add-model. To check: ${notes.join('; ')}.`
  return { config, notes }
}
