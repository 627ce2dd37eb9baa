/** Helpers for tests of the R2 repository: publish versions into the local bucket as publish-model does. */
import { env } from 'cloudflare:workers'
import { Isolate, isolate } from '../../src/isolate'
import { MANIFEST_FILE, sha256Hex } from '../../src/repository/manifest'

/** The bundled iris model's files: model.json and its one shard. */
export async function irisFiles(): Promise<Record<string, ArrayBuffer>> {
  const get = async (path: string) => (await env.ASSETS.fetch(`https://a/iris/1/${path}`)).arrayBuffer()
  return { 'model.json': await get('model.json'), 'group1-shard1of1.bin': await get('group1-shard1of1.bin') }
}

/** Iris with its output bias set to `bias`: the same signature, other predictions, so a response shows which version made it. */
export async function irisWithBias(bias: [number, number, number]): Promise<Record<string, ArrayBuffer>> {
  const files = await irisFiles()
  const shard = files['group1-shard1of1.bin']!.slice(0)
  new Float32Array(shard, shard.byteLength - 12, 3).set(bias) // species/bias is the shard's last weight
  return { ...files, 'group1-shard1of1.bin': shard }
}

export interface PublishOptions {
  signatureChange?: boolean
  /** Changes a file after its size and hash are recorded: corruption in transit or at rest. */
  damage?: (path: string, bytes: ArrayBuffer) => ArrayBuffer
}

/** Uploads `files` as `<name>/<version>/…` and, last, the manifest with each file's size and sha256. */
export async function publish(
  bucket: R2Bucket,
  name: string,
  version: number,
  files: Record<string, ArrayBuffer>,
  options: PublishOptions = {},
) {
  const manifest = {
    files: [] as { path: string; bytes: number; sha256: string }[],
    signature_change: options.signatureChange ?? false,
  }
  for (const [path, bytes] of Object.entries(files)) {
    manifest.files.push({ path, bytes: bytes.byteLength, sha256: await sha256Hex(bytes) })
    await bucket.put(`${name}/${version}/${path}`, options.damage ? options.damage(path, bytes) : bytes)
  }
  await bucket.put(`${name}/${version}/${MANIFEST_FILE}`, JSON.stringify(manifest))
}

/** Deletes everything in the bucket. */
export async function emptyBucket(bucket: R2Bucket) {
  for (let i = 0; i < 20; i++) {
    const { objects } = await bucket.list()
    if (objects.length === 0) return
    await bucket.delete(objects.map((o) => o.key))
  }
}

/**
 * Validates what is new in the bucket and writes the pointer, as a cron run in another isolate would
 * (a state of its own, on this isolate's tf.js backend): this isolate's cache and view are untouched.
 */
export async function publishElsewhere(bindings: Env = env, bucket: R2Bucket = bindings.MODELS) {
  const elsewhere = new Isolate(isolate().backend)
  try {
    const report = await elsewhere.maintain({ ...bindings, MODELS: bucket } as Env)
    if (!report.publish) throw new Error(`nothing published: ${report.publishError}`)
    return report.publish
  } finally {
    elsewhere.dispose()
  }
}
