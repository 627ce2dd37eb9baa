/**
 * @module protocols/limits — the structural limits of a request body, shared by the JSON reader
 * (http/body.ts), the tensor reader (json-tensors.ts) and the tensor builder (tensors.ts): a leaf,
 * so none of them imports another for a constant.
 */

/** Dimensions a request's tensor may have: TensorFlow itself allows no more than 254, models use a handful. */
export const MAX_RANK = 32

/**
 * Levels of nesting a body may have: twice a tensor's MAX_RANK, so every request that means
 * something fits with room for its envelope. JSON.parse is slow on depth, not only on size:
 * in workerd an 8 MB body nested 4 million levels took 1.7–2.4 s to parse (and, in Node, 230 MB
 * of heap), the slowest flat 8 MB body 0.25 s. Counting the depth first costs about 1 ms a MB.
 */
export const MAX_JSON_DEPTH = 64
