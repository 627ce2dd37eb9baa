/** @module model/tf — the one place that imports tf.js and picks its backend. */
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'

export { tf }

let backend: Promise<string> | undefined

/** Initialises the backend once per isolate (lazily: no work may run in global scope). */
export function ensureBackend(): Promise<string> {
  // workerd exposes `process.versions.node`, so tf.js takes it for Node and nags about tfjs-node,
  // which cannot run here. tf.js already chose its browser platform (WorkerGlobalScope exists).
  tf.env().set('IS_NODE', false)
  backend ??= tf.setBackend('cpu').then(async (ok) => {
    if (!ok) throw new Error('tf.js cpu backend failed to initialise')
    await tf.ready()
    return tf.getBackend()
  })
  return backend
}
