#!/usr/bin/env node
/**
 * The anchor: the server a user would write by hand instead of deploying warmserve. Node's `http`,
 * `JSON.parse`, `tf.tensor` on the nested rows, tf.js's wasm backend, every model loaded once at
 * start. It speaks only what the bench sends: TF Serving's `POST /v1/models/{m}:predict` with
 * `instances`, and `GET /v2/health/live` (the no-op request).
 *
 * Usage (bench/run.mjs starts it): node bench/anchor.mjs ASSETS_DIR MODEL[,MODEL…]
 * Prints `listening PORT` once every model is loaded; binds 127.0.0.1 on a free port.
 */
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const require = createRequire(import.meta.url)
const tf = require('@tensorflow/tfjs-core')
const wasm = require('@tensorflow/tfjs-backend-wasm')
const tfl = require('@tensorflow/tfjs-layers')

const [assetsDir, modelList] = process.argv.slice(2)
tf.env().set('PROD', true)
wasm.setWasmPaths(`${dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'))}/dist/`)
await tf.setBackend('wasm')
await tf.ready()

const models = new Map()
for (const name of modelList.split(',')) {
  const dir = join(assetsDir, name, '1')
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'))
  const weightData = json.weightsManifest.flatMap((group) =>
    group.paths.map((p) => {
      const b = readFileSync(join(dir, p))
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)
    }),
  )
  const artifacts = {
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData,
  }
  models.set(name, await tfl.loadLayersModel(tf.io.fromMemory(artifacts)))
}

const send = (res, status, value) => {
  const body = JSON.stringify(value)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/v2/health/live') return send(res, 200, { live: true })
  const match = req.method === 'POST' && /^\/v1\/models\/([^/:]+):predict$/.exec(req.url ?? '')
  const model = match && models.get(match[1])
  if (!model) return send(res, 404, { error: 'not found' })
  const chunks = []
  req.on('data', (chunk) => chunks.push(chunk))
  req.on('end', async () => {
    try {
      const { instances } = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      const x = tf.tensor(instances, undefined, 'float32')
      const y = model.predict(x)
      const predictions = await y.array()
      x.dispose()
      y.dispose()
      send(res, 200, { predictions })
    } catch (error) {
      send(res, 400, { error: error.message })
    }
  })
})
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`))
