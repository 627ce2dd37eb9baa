/**
 * The floor inside workerd (bench only; bench/workerd-floor.mjs serves it): tf.js `predictOnBatch`
 * plus reading the result, in a Worker's isolate, on the same wasm backend warmserve runs
 * (src/runtime/wasm.ts), with no HTTP routing, body, protocol or cache around it. It separates what
 * the runtime costs (tf.js's wasm kernels run slower in workerd than in Node) from what warmserve
 * adds.
 *
 * - `POST /load/{name}`: the model and its input, as JSON `{ modelTopology, weightSpecs, weights
 *   (base64), input: { flat, shape } }`.
 * - `GET /run/{name}?n=N`: runs the model N times on its input and answers `{ ms }`, the mean time of
 *   one run by the isolate's clock (whole milliseconds; the mean of N is finer).
 * - `GET /noop`: answers at once. `POST /sink`: reads the body and answers its length: the cost of
 *   moving a body, without a model.
 */
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import { WasmBackend } from '../src/runtime/wasm'

interface Loaded {
  model: tfl.LayersModel
  x: tf.Tensor
}

interface LoadBody {
  modelTopology: object
  weightSpecs: tf.io.WeightsManifestEntry[]
  weights: string
  input: { flat: number[]; shape: number[] }
}

const loaded = new Map<string, Loaded>()
let backend: Promise<void> | undefined

function fromBase64(text: string): ArrayBuffer {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes.buffer
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url)
    // A request that does nothing, and one that only moves its body (read whole, its length answered).
    if (url.pathname === '/noop') return Response.json({ ok: true })
    if (url.pathname === '/sink') return Response.json({ bytes: (await request.arrayBuffer()).byteLength })
    backend ??= new WasmBackend().activate()
    await backend
    const [, action, name = ''] = url.pathname.split('/')
    if (action === 'load' && request.method === 'POST') {
      const body = await request.json<LoadBody>()
      const model = await tfl.loadLayersModel(
        tf.io.fromMemory({
          modelTopology: body.modelTopology,
          weightSpecs: body.weightSpecs,
          weightData: fromBase64(body.weights),
        }),
      )
      loaded.get(name)?.model.dispose()
      loaded.set(name, { model, x: tf.tensor([body.input.flat], [1, ...body.input.shape], 'float32') })
      return Response.json({ loaded: name, backend: tf.getBackend() })
    }
    const entry = loaded.get(name)
    if (action === 'run' && entry) {
      const n = Math.max(1, Number(url.searchParams.get('n') ?? 1))
      const started = Date.now()
      for (let i = 0; i < n; i++) {
        const y = entry.model.predictOnBatch(entry.x) as tf.Tensor
        await y.data()
        y.dispose()
      }
      return Response.json({ ms: (Date.now() - started) / n })
    }
    return new Response(`no ${request.method} ${url.pathname} here`, { status: 404 })
  },
}
