/**
 * The Worker a user would write in an afternoon instead of deploying warmserve (bench only; served by
 * bench/hand.mjs): each model loaded from the ASSETS binding on first use and kept at module scope,
 * tf.js on the same wasm SIMD backend (started with warmserve's src/runtime/wasm.ts, because a Worker
 * cannot compile wasm from bytes), `JSON.parse` + `tf.tensor` in and `JSON.stringify` out. No router,
 * no validation, no metrics: the floor warmserve's request path is measured against.
 *
 * - `POST /v1/models/{name}:predict` with `{ "instances": [...] }` (TF Serving);
 * - `POST /v2/models/{name}/infer` with the v2 binary layout (a JSON header of
 *   `Inference-Header-Content-Length` bytes, then the one input's float32 data), answered in JSON;
 * - `GET /v2/health/live`: the no-op.
 */
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import * as tfc from '@tensorflow/tfjs-converter'
import { WasmBackend } from '../src/runtime/wasm'

interface Env {
  ASSETS: Fetcher
}

type Model = tfl.LayersModel | tfc.GraphModel

let backend: Promise<void> | undefined
const models = new Map<string, Promise<Model>>()

/** model.json's shards, read from the ASSETS binding. */
function assetsHandler(env: Env, dir: string, json: tf.io.ModelJSON): tf.io.IOHandler {
  return {
    async load() {
      const shards = await Promise.all(
        json.weightsManifest
          .flatMap((group) => group.paths)
          .map(async (path) => (await env.ASSETS.fetch(`http://assets/${dir}/${path}`)).arrayBuffer()),
      )
      return {
        modelTopology: json.modelTopology,
        format: json.format,
        weightSpecs: json.weightsManifest.flatMap((group) => group.weights),
        weightData: shards,
      }
    },
  }
}

async function load(env: Env, name: string): Promise<Model> {
  backend ??= new WasmBackend().activate()
  await backend
  const json = await (await env.ASSETS.fetch(`http://assets/${name}/1/model.json`)).json<tf.io.ModelJSON>()
  const handler = assetsHandler(env, `${name}/1`, json)
  return json.format === 'graph-model' ? tfc.loadGraphModel(handler) : tfl.loadLayersModel(handler)
}

function model(env: Env, name: string): Promise<Model> {
  let m = models.get(name)
  if (!m) models.set(name, (m = load(env, name)))
  return m
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const path = new URL(request.url).pathname
    if (path === '/v2/health/live') return Response.json({ live: true })
    const v1 = /^\/v1\/models\/([^/:]+):predict$/.exec(path)
    if (v1) {
      const m = await model(env, v1[1] ?? '')
      const { instances } = JSON.parse(await request.text())
      const x = tf.tensor(instances, undefined, 'float32')
      const y = m.predict(x) as tf.Tensor
      const predictions = await y.array()
      tf.dispose([x, y])
      return Response.json({ predictions })
    }
    const v2 = /^\/v2\/models\/([^/]+)\/infer$/.exec(path)
    if (v2) {
      const m = await model(env, v2[1] ?? '')
      const body = await request.arrayBuffer()
      const headerLength = Number(request.headers.get('inference-header-content-length'))
      const header = JSON.parse(new TextDecoder().decode(new Uint8Array(body, 0, headerLength)))
      const input = header.inputs[0]
      const x = tf.tensor(new Float32Array(body.slice(headerLength)), input.shape, 'float32')
      const y = m.predict(x) as tf.Tensor
      const data = Array.from(await y.data())
      tf.dispose([x, y])
      return Response.json({
        model_name: v2[1],
        outputs: [{ name: 'output_0', datatype: 'FP32', shape: y.shape, data }],
      })
    }
    return new Response('not found', { status: 404 })
  },
}
