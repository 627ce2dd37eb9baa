/** @module http/body — reads a request's body within the size limit, with the right 4xx for each mistake. */
import { DEFAULTS } from '../core/config'
import { ApiError, badRequest, ClientGoneError } from '../core/errors'
import { MAX_JSON_DEPTH } from '../protocols/limits'
import { checkJsonCost, scanJson } from '../protocols/json-cost'
import { freeBuffer, releasePacked } from '../protocols/json-tensors'

/**
 * What each request's body left in JavaScript, freed by releaseBody once its answer is made: its bytes
 * (up to MAX_BODY_BYTES) and a JSON body's packed numbers. Left to V8, a finished request's buffers
 * still counted against the isolate while the next requests ran (docs/memory.md, "what finished
 * requests leave").
 */
const bodies = new WeakMap<Request, (() => void)[]>()

function hold(request: Request, release: () => void): void {
  const held = bodies.get(request)
  if (held) held.push(release)
  else bodies.set(request, [release])
}

/**
 * Frees what `request`'s body left (its bytes, its packed numbers): every view of them reads as empty
 * afterwards, so only once nothing reads them (http/middleware/release-body.ts).
 */
export function releaseBody(request: Request): void {
  for (const release of bodies.get(request) ?? []) release()
  bodies.delete(request)
}

/**
 * Content types taken as JSON. TF Serving parses the body whatever its type, and the curl
 * examples in its docs use `-d`, which sends `application/x-www-form-urlencoded`: accepted too.
 */
const JSON_TYPES = /^(application\/(json|[\w.+-]+\+json|x-www-form-urlencoded)|text\/plain)$/i

/**
 * Reads the whole body, at most `maxBytes` of it: 413 past the limit, declared or streamed; 408 when
 * it has not all arrived within `timeoutMs` (BODY_READ_TIMEOUT_MS); 499 when the stream breaks (the
 * client closed the connection mid-body). Whatever happens, the read ends: a request holding a
 * traffic slot never waits on a body for ever.
 * A body with a Content-Length is read in one call; one without (chunked) is that chunk when it came
 * in one, else copied once, placed so that byte `alignAt` starts an 8-byte boundary (where the binary
 * extension's tensors begin, which typed arrays can then view without another copy).
 */
export async function readBytes(
  request: Request,
  maxBytes: number,
  alignAt = 0,
  timeoutMs: number = DEFAULTS.BODY_READ_TIMEOUT_MS,
): Promise<Uint8Array> {
  const declared = Number(request.headers.get('content-length') ?? NaN)
  if (declared > maxBytes) throw tooLarge(maxBytes)
  if (!request.body) return new Uint8Array(0)
  let timer: ReturnType<typeof setTimeout> | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new ApiError(408, `the request body did not arrive within ${timeoutMs} ms (BODY_READ_TIMEOUT_MS)`))
      // Stops the read; a body already locked by arrayBuffer() cannot be cancelled, and is dropped with the request.
      if (!request.body!.locked) void request.body!.cancel().catch(() => {})
    }, timeoutMs)
  })
  try {
    const bytes = await Promise.race([readAll(request, maxBytes, declared, alignAt), deadline])
    hold(request, () => freeBuffer(bytes.buffer))
    return bytes
  } catch (error) {
    if (error instanceof ApiError) throw error
    // The stream failed under us: only the connection's end does that to a request body.
    throw new ClientGoneError(
      `the request body broke off while it was being read: ${(error as Error)?.message ?? String(error)}`,
      error,
    )
  } finally {
    if (timer !== undefined) clearTimeout(timer)
  }
}

const tooLarge = (maxBytes: number) =>
  new ApiError(413, `request body exceeds the limit of ${maxBytes} bytes (MAX_BODY_BYTES)`)

async function readAll(request: Request, maxBytes: number, declared: number, alignAt: number): Promise<Uint8Array> {
  // A declared length the runtime holds the body to: read in one native call, without a reader's
  // promise per chunk (a third of the Worker's own time on a small request, profiled in workerd).
  // The binary extension's tensors then land where they land: one that is not aligned is copied
  // once where it is read (protocols/v2/binary.ts), no more than the chunks' concatenation below copies.
  if (Number.isSafeInteger(declared)) {
    const bytes = new Uint8Array(await request.arrayBuffer())
    if (bytes.byteLength > maxBytes) throw tooLarge(maxBytes)
    return bytes
  }

  // Count while reading: a chunked body has no Content-Length to trust.
  const chunks: Uint8Array[] = []
  let size = 0
  const reader = request.body!.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > maxBytes) {
      await reader.cancel()
      throw tooLarge(maxBytes)
    }
    chunks.push(value)
  }
  if (chunks.length === 1) return chunks[0]!
  return concatBytes(chunks, (8 - (alignAt % 8)) % 8)
}

/**
 * `parts` one after another in one new array; with `pad`, the array starts `pad` bytes into its
 * buffer (so that a later offset in it lands on an aligned boundary).
 */
export function concatBytes(parts: Uint8Array[], pad = 0): Uint8Array {
  const size = parts.reduce((n, part) => n + part.byteLength, 0)
  const bytes = new Uint8Array(new ArrayBuffer(pad + size), pad, size)
  let offset = 0
  for (const part of parts) {
    bytes.set(part, offset)
    offset += part.byteLength
  }
  return bytes
}

/** Parses JSON bytes: 400 for an empty, malformed or too deeply nested body. */
export function parseJson(bytes: Uint8Array, what = 'request body'): unknown {
  const { cost, tooDeepAt } = scanJson(bytes, 0, MAX_JSON_DEPTH)
  if (tooDeepAt !== -1)
    throw badRequest(
      `${what} nests deeper than ${MAX_JSON_DEPTH} levels (at byte ${tooDeepAt}); no request needs that many`,
    )
  checkJsonCost(cost, what)
  const text = new TextDecoder().decode(bytes)
  if (text.trim() === '') throw badRequest(`${what} is empty: expected a JSON object`)
  try {
    return JSON.parse(text)
  } catch (error) {
    throw badRequest(`malformed JSON in ${what}: ${(error as Error).message}`)
  }
}

/** The image formats served, by the signature their files open with (a JPEG's SOI marker, PNG's 8 bytes, WebP's RIFF header). */
const IMAGE_SIGNATURES: Array<{ name: string; type: string; matches: (b: Uint8Array) => boolean }> = [
  { name: 'JPEG', type: 'image/jpeg', matches: (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff },
  {
    name: 'PNG',
    type: 'image/png',
    matches: (b) => [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((byte, i) => b[i] === byte),
  },
  { name: 'WebP', type: 'image/webp', matches: (b) => ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 12) === 'WEBP' },
]

const ascii = (bytes: Uint8Array, start: number, end: number) => String.fromCharCode(...bytes.subarray(start, end))

/**
 * 415 for image bytes sent as JSON: a client that posts a file without a Content-Type (Python's
 * `requests.post(url, data=open(...).read())`) or with curl's default form type would otherwise get
 * JSON.parse's complaint about the bytes. The answer says what the body looks like and what to send.
 */
function refuseImageAsJson(bytes: Uint8Array, type: string | undefined): void {
  const image = IMAGE_SIGNATURES.find((s) => s.matches(bytes))
  if (!image) return
  const sent = type ? `with content type '${type}'` : 'without a content type'
  throw new ApiError(
    415,
    `the body is a ${image.name} image (it starts with ${image.name}'s signature), sent ${sent} where JSON is read: ` +
      `send it to …:classify with the header 'Content-Type: ${image.type}', or base64-encoded inside JSON ({"b64": …} for TF Serving, a BYTES input for v2)`,
  )
}

/**
 * Reads and parses a JSON body of at most `maxBytes`, within `timeoutMs` (as `readBytes`).
 * 415 for a content type that is not JSON or a body that is an image, 413 past the limit, 400 for malformed JSON.
 * `fast` reads the bytes first when given (protocols/json-tensors.ts); where it answers
 * `undefined`, JSON.parse does, and says what is wrong.
 */
export async function readJson(
  request: Request,
  maxBytes: number,
  fast?: (bytes: Uint8Array) => unknown,
  timeoutMs: number = DEFAULTS.BODY_READ_TIMEOUT_MS,
): Promise<unknown> {
  const type = request.headers.get('content-type')?.split(';')[0]?.trim()
  if (type && !JSON_TYPES.test(type)) {
    throw new ApiError(415, `content type '${type}' is not supported: send application/json`)
  }
  const bytes = await readBytes(request, maxBytes, 0, timeoutMs)
  refuseImageAsJson(bytes, type)
  const read = fast?.(bytes)
  if (read === undefined) return parseJson(bytes)
  hold(request, () => releasePacked(read))
  return read
}
