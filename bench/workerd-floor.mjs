/**
 * The floor inside workerd: bench/floor-worker.ts (tf.js `predictOnBatch` + reading the result, on
 * warmserve's own wasm backend, with nothing around it), bundled as `wrangler deploy` would bundle it
 * and served as warmserve's bundle is (scripts/tools/launch.mjs startBundle: workerd through Miniflare with
 * wrangler.toml's bindings), so behind the same static-assets router (run_worker_first). Requests to it show what the platform costs with no
 * warmserve code on the path: a request that does nothing, one that moves a body, one inference per
 * request; its hot loop, timed by the isolate's clock, is tf.js alone. `obstaclesMarkdown` sets these
 * beside warmserve's figures from the same run.
 */
import { join } from 'node:path'
import { buildBundle, startBundle } from '../scripts/tools/launch.mjs'
import { fmt } from './format.mjs'
import { artifactsFrom, inputFor } from './measure.mjs'

/** Runs per hot-loop sample: enough that the isolate's whole-millisecond clock resolves the mean to ≤ 0.05 ms. */
const HOT_RUNS = { iris: 200, image: 20 }

/** The model's artifacts and input as the floor Worker's `POST /load` takes them. */
function loadBody(dir, name) {
  const { modelTopology, weightSpecs, weightData } = artifactsFrom(dir)
  const weights = Buffer.concat(weightData.map((buffer) => Buffer.from(buffer)))
  return JSON.stringify({ modelTopology, weightSpecs, weights: weights.toString('base64'), input: inputFor(name) })
}

/**
 * Starts the floor Worker with each of `models` (name → key, e.g. `mobilenet-ish` → `image`) loaded
 * from `assetsDir`. Returns its `url`, the hot-loop round-robin targets `floor-workerd:{key}` (each
 * sample the mean of a batch of runs, in ms by the isolate's clock), and `stop()`.
 */
export async function startWorkerdFloor(assetsDir, models) {
  const bundle = await buildBundle({ config: 'bench/floor-worker.toml' })
  // It answers no health check: ready once its port is open.
  const { url, stop } = await startBundle({ bundle, assetsDir, ready: 'listening' })
  try {
    const hotTargets = []
    for (const [name, key] of Object.entries(models)) {
      const res = await fetch(`${url}/load/${name}`, {
        method: 'POST',
        body: loadBody(join(assetsDir, name, '1'), name),
      })
      const loaded = await res.json()
      if (!res.ok || loaded.backend !== 'wasm')
        throw new Error(`the floor Worker could not load ${name}: ${res.status} ${JSON.stringify(loaded)}`)
      hotTargets.push({
        key: `floor-workerd:${key}`,
        run: async () => {
          const r = await fetch(`${url}/run/${name}?n=${HOT_RUNS[key] ?? 20}`)
          return { ms: (await r.json()).ms, status: r.status }
        },
      })
    }
    return { url, hotTargets, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

/**
 * "What stands in the way": the two latency targets taken apart with the floor Worker's figures
 * from the same round-robin (`l`: p50s by key). Empty when the run did not time them.
 */
export function obstaclesMarkdown(l, speed) {
  const p = (key) => l[key]?.p50
  if ([':noop', ':iris', ':image', ':sink-iris', ':sink-binary'].some((k) => p(`workerd${k}`) === undefined)) return []
  const ms = (v) => `${fmt(v, 2)} ms`
  const imageOnce = p('workerd:image') - p('workerd:noop')
  const irisOnce = p('workerd:iris') - p('workerd:noop')
  const platform = imageOnce + p('workerd:sink-binary')
  const line = 1.25 * p('floor:image')
  const irisBody = p('workerd:sink-iris') - p('workerd:noop')
  return [
    '### What stands in the way',
    '',
    'Taken apart in the same round-robin with bench/floor-worker.ts, a Worker with no warmserve code: tf.js on the same',
    'wasm backend, behind the same static-assets router (`run_worker_first`), answering a no-op, moving a body, or running',
    "the model once per request. Its hot loop is timed by the isolate's clock (whole ms; each sample the mean of many runs).",
    '',
    '| | image model, OIP binary | iris, TF Serving JSON |',
    '|---|---:|---:|',
    `| tf.js in Node, hot loop (the floor of the targets) | ${ms(p('floor:image'))} | ${ms(p('floor:iris'))} |`,
    `| tf.js in workerd, hot loop | ${ms(p('floor-workerd:image'))} | ${ms(p('floor-workerd:iris'))} |`,
    `| tf.js in workerd, one run per request (the request less a no-op) | ${ms(imageOnce)} | ${ms(irisOnce)} |`,
    `| a request moving the same body, no model (the whole request; less a no-op for iris) | ${ms(p('workerd:sink-binary'))} | ${ms(irisBody)} |`,
    `| **a Worker that only infers** (the two rows above; binary: the whole request) | **${ms(platform)}** | ${ms(irisOnce + irisBody)} |`,
    `| warmserve (binary: the request; iris: less its own no-op, ${ms(p('ws:noop'))}) | ${ms(p('ws:image-v2-binary'))} | ${ms(p('ws:iris') - p('ws:noop'))} |`,
    `| **warmserve's own time** (warmserve less a Worker that only infers) | **${ms(p('ws:image-v2-binary') - platform)}** | **${ms(p('ws:iris') - p('ws:noop') - irisOnce - irisBody)}** |`,
    '',
    `The binary target's line is 1.25 × ${ms(p('floor:image'))} = ${ms(line)}. ` +
      (platform > line
        ? `A Worker that does nothing but receive the body and infer once already takes ${ms(platform)}, ${ms(platform - line)} over it: ` +
          'the line is out of reach on this machine whatever warmserve does, because the floor is a hot loop in Node and a request pays a cold first run and the local router.'
        : `A Worker that only infers takes ${ms(platform)}, ${ms(line - platform)} under it: that is all the line leaves warmserve for its own work, ` +
          `which takes ${ms(p('ws:image-v2-binary') - platform)} (reading the header and the body, routing, the lease, the answer, the access log).`),
    `For iris, the target counts inference at the Node floor (${ms(p('floor:iris'))}); one run per request in workerd costs ${ms(irisOnce)}, ` +
      `and moving the body ${ms(irisBody)} more than a no-op.`,
    '',
  ]
}
