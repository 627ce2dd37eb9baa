/** A v2 binary-extension request body, for the workers tests (test/support/helpers.ts) and the e2e ones alike. */

/**
 * A POST to a v2 `/infer` in the binary tensor extension: a JSON header giving each input's
 * `binary_data_size`, then the inputs' bytes in the same order, the header's length in
 * `inference-header-content-length`. `parameters` are the request's own (e.g. `binary_data_output`).
 */
export function binaryInfer(
  inputs: { name: string; datatype: string; shape: number[]; data: Uint8Array }[],
  parameters?: Record<string, unknown>,
): RequestInit {
  const header = new TextEncoder().encode(
    JSON.stringify({
      inputs: inputs.map(({ name, datatype, shape, data }) => ({
        name,
        datatype,
        shape,
        parameters: { binary_data_size: data.byteLength },
      })),
      ...(parameters && { parameters }),
    }),
  )
  const body = new Uint8Array(header.byteLength + inputs.reduce((n, { data }) => n + data.byteLength, 0))
  body.set(header)
  let at = header.byteLength
  for (const { data } of inputs) {
    body.set(data, at)
    at += data.byteLength
  }
  return {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(header.byteLength),
    },
  }
}
