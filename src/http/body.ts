/** @module http/body — reads a request's body within the size limit, with the right 4xx for each mistake. */
import { ApiError, badRequest } from '../errors'

/**
 * Content types taken as JSON. TF Serving parses the body whatever its type, and the curl
 * examples in its docs use `-d`, which sends `application/x-www-form-urlencoded`: accepted too.
 */
const JSON_TYPES = /^(application\/(json|[\w.+-]+\+json|x-www-form-urlencoded)|text\/plain)$/i

/** Reads the whole body, at most `maxBytes` of it: 413 past the limit, declared or streamed. */
export async function readBytes(request: Request, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(request.headers.get('content-length') ?? NaN)
  const tooLarge = () => new ApiError(413, `request body exceeds the limit of ${maxBytes} bytes (MAX_BODY_BYTES)`)
  if (declared > maxBytes) throw tooLarge()
  if (!request.body) return new Uint8Array(0)

  // Count while reading: a chunked body has no Content-Length to trust.
  const chunks: Uint8Array[] = []
  let size = 0
  const reader = request.body.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > maxBytes) {
      await reader.cancel()
      throw tooLarge()
    }
    chunks.push(value)
  }
  if (chunks.length === 1) return chunks[0]!
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  return bytes
}

/** Parses JSON bytes: 400 for an empty or malformed body. */
export function parseJson(bytes: Uint8Array, what = 'request body'): unknown {
  const text = new TextDecoder().decode(bytes)
  if (text.trim() === '') throw badRequest(`${what} is empty: expected a JSON object`)
  try {
    return JSON.parse(text)
  } catch (error) {
    throw badRequest(`malformed JSON in ${what}: ${(error as Error).message}`)
  }
}

/**
 * Reads and parses a JSON body of at most `maxBytes`.
 * 415 for a content type that is not JSON, 413 past the limit, 400 for malformed JSON.
 */
export async function readJson(request: Request, maxBytes: number): Promise<unknown> {
  const type = request.headers.get('content-type')?.split(';')[0]?.trim()
  if (type && !JSON_TYPES.test(type)) {
    throw new ApiError(415, `content type '${type}' is not supported: send application/json`)
  }
  return parseJson(await readBytes(request, maxBytes))
}
