/** Shared test helpers: real tf.js models built in the test, and requests to the Worker. */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import * as tfl from '@tensorflow/tfjs-layers'
import { beforeEach, expect } from 'vitest'
import worker from '../../src/index'
import { resetIsolate } from '../../src/isolate'
import { tf } from '../../src/runtime/tf'

export { binaryInfer } from './binary-infer'

/** An iris setosa flower's measurements (cm): the bundled iris model answers class 0. */
export const SETOSA = [5.1, 3.5, 1.4, 0.2]

/** Artifacts of a small real layers model: input [-1, 4] → softmax [-1, 3]. */
export async function tinyModelArtifacts(units = 8): Promise<tf.io.ModelArtifacts> {
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({
        inputShape: [4],
        units,
        activation: 'relu',
        kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }),
      }),
      tfl.layers.dense({
        units: 3,
        activation: 'softmax',
        kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }),
      }),
    ],
  })
  const saved = await artifactsOf(model)
  model.dispose()
  return saved
}

/** A built layers model's artifacts, as `model.save` hands them to a save handler. */
export async function artifactsOf(model: tfl.LayersModel): Promise<tf.io.ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
    }),
  )
  return saved!
}

/** Calls the Worker's fetch handler the way the runtime does and waits for its background work. */
export async function call(path: string, init?: RequestInit, bindings: Env = env): Promise<Response> {
  const ctx = createExecutionContext()
  const response = await worker.fetch(new Request(`http://warmserve.test${path}`, init), bindings, ctx)
  await waitOnExecutionContext(ctx)
  return response
}

/** POSTs a JSON body. */
export const post = (path: string, body: unknown, headers: Record<string, string> = {}, bindings?: Env) =>
  call(
    path,
    {
      method: 'POST',
      body: typeof body === 'string' ? body : JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...headers },
    },
    bindings,
  )

/** Asserts that `method path` is answered 405, with the methods it takes in `Allow` and in the error. */
export async function expectNotAllowed(method: string, path: string, allow: string): Promise<void> {
  const res = await call(path, { method })
  expect(res.status).toBe(405)
  expect(res.headers.get('allow')).toBe(allow)
  expect((await res.json<{ error: string }>()).error).toBe(
    `${method} is not allowed on ${new URL(path, 'http://warmserve.test').pathname}; use ${allow}`,
  )
}

/** A manually advanced clock for backoff and idle-TTL tests. */
export function fakeClock(start = 1_000_000) {
  let now = start
  return { now: () => now, advance: (ms: number) => void (now += ms) }
}

/**
 * Before each test of the calling file, a fresh isolate state on a clock of the test's own: time
 * (a backoff, an idle TTL, REFRESH_INTERVAL) passes only when the test calls `advance`.
 */
export function isolateOnFakeClock() {
  let clock = fakeClock()
  beforeEach(() => {
    clock = fakeClock()
    resetIsolate({ now: clock.now })
  })
  return { now: () => clock.now(), advance: (ms: number) => clock.advance(ms) }
}

/** Fires the cron handler as the runtime does and waits for it. */
export async function runCron(bindings: Env = env, scheduledTime = Date.now()) {
  const ctx = createExecutionContext()
  await worker.scheduled(createScheduledController({ cron: '*/5 * * * *', scheduledTime }), bindings, ctx)
  await waitOnExecutionContext(ctx)
}
