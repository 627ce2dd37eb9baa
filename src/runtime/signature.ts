/** @module runtime/signature — one description of a model's inputs and outputs, whatever its tf.js format. */

/** The dtypes a tf.js tensor can have. */
export type DType = 'float32' | 'int32' | 'bool' | 'string' | 'complex64'

export interface TensorSpec {
  /** The key clients use: the signature key, or else the tensor's node name. */
  name: string
  /** The graph tensor behind it (`serving_default_x:0`), for metadata. */
  tensorName: string
  dtype: DType
  /** Dimensions with -1 for unknown; `null` when even the rank is unknown. */
  shape: number[] | null
}

export interface Signature {
  inputs: TensorSpec[]
  outputs: TensorSpec[]
}

/** The serving signature's name, as TF Serving calls the default one. */
export const DEFAULT_SIGNATURE = 'serving_default'

const fromTensorFlow: Record<string, DType> = {
  DT_FLOAT: 'float32',
  DT_HALF: 'float32',
  DT_BFLOAT16: 'float32',
  DT_DOUBLE: 'float32',
  DT_INT32: 'int32',
  DT_INT64: 'int32',
  DT_INT16: 'int32',
  DT_INT8: 'int32',
  DT_UINT8: 'int32',
  DT_UINT16: 'int32',
  DT_BOOL: 'bool',
  DT_STRING: 'string',
  DT_COMPLEX64: 'complex64',
}

const toTensorFlow: Record<DType, string> = {
  float32: 'DT_FLOAT',
  int32: 'DT_INT32',
  bool: 'DT_BOOL',
  string: 'DT_STRING',
  complex64: 'DT_COMPLEX64',
}

/** Maps a TensorFlow dtype name (`DT_FLOAT`) to the tf.js dtype that tensor is held in. */
export function dtypeFromTensorFlow(name: string | undefined): DType | undefined {
  return name === undefined ? undefined : fromTensorFlow[name]
}

/** Maps a tf.js dtype to the TensorFlow name TF Serving's metadata uses. */
export function dtypeToTensorFlow(dtype: DType): string {
  return toTensorFlow[dtype]
}

/** Renders a shape for messages: `[-1, 28, 28, 1]`, or `unknown rank`. */
export function formatShape(shape: readonly number[] | null): string {
  return shape === null ? 'unknown rank' : `[${shape.join(', ')}]`
}

const shapeText = (shape: number[] | null) => (shape === null ? 'unknown rank' : `[${shape.join(', ')}]`)

/**
 * How `next` differs from `current` in ways a client would notice: an input or output added,
 * removed, or of another dtype or shape. Empty when a client of `current` can use `next` unchanged.
 */
export function signatureChanges(current: Signature, next: Signature): string[] {
  const changes: string[] = []
  const compare = (side: 'input' | 'output', before: TensorSpec[], after: TensorSpec[]) => {
    const now = new Map(after.map((s) => [s.name, s]))
    for (const old of before) {
      const spec = now.get(old.name)
      if (!spec) changes.push(`${side} '${old.name}' is gone`)
      else if (spec.dtype !== old.dtype) changes.push(`${side} '${old.name}' dtype ${old.dtype} → ${spec.dtype}`)
      else if (shapeText(spec.shape) !== shapeText(old.shape))
        changes.push(`${side} '${old.name}' shape ${shapeText(old.shape)} → ${shapeText(spec.shape)}`)
    }
    const names = new Set(before.map((s) => s.name))
    for (const spec of after) if (!names.has(spec.name)) changes.push(`${side} '${spec.name}' is new`)
  }
  compare('input', current.inputs, next.inputs)
  compare('output', current.outputs, next.outputs)
  return changes
}
