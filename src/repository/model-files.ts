/** @module repository/model-files — a tf.io IOHandler that reads model.json and its weight shards from a ModelStore. */
import { assetUrl } from './stores'
import type { ModelStore } from './stores'
import { tf } from '../runtime/tf'
import { manifestBytes } from './weights'

/** Shards fetched at once: Workers allow six simultaneous outgoing connections. */
const MAX_PARALLEL_SHARDS = 6

/**
 * Resolves a shard path against the model's folder, refusing any that would leave it. The stores
 * read a path differently: R2 takes the key literally, the assets store as a URL, which also
 * resolves `%2e%2e` and turns backslashes into slashes (`%2e%2e/%2e%2e/digits/1/…` and
 * `a\..\..\_index.json` pass a literal check). So the path must be a plain relative path
 * literally, and read as a URL it must come out unchanged: then both stores read the same file,
 * inside the folder.
 */
function shardPath(dir: string, path: string): string {
  const key = `${dir}/${path}`
  let asUrl: string | undefined
  try {
    asUrl = decodeURIComponent(assetUrl(key).pathname)
  } catch {
    // A malformed %-escape: the assets store cannot read it as the key says.
  }
  const plain = !path.startsWith('/') && !path.split('/').some((part) => part === '..' || part === '.' || part === '')
  if (!plain || asUrl !== `/${key}`) {
    const resolved = asUrl !== undefined && asUrl !== `/${key}` ? ` (read as a URL: '${asUrl.slice(1)}')` : ''
    throw new Error(
      `weight shard path '${path}' leaves the model folder ${dir}/ or is not a plain relative path${resolved}`,
    )
  }
  return key
}

async function readFile(store: ModelStore, path: string): Promise<ArrayBuffer> {
  const bytes = await store.get(path)
  if (bytes === null) throw new Error(`${path} is missing from ${store.description}`)
  return bytes
}

/**
 * The digest the repository index's `memory` figures name (docs/memory.md): sha-256 of model.json's
 * bytes followed by every shard's, in the manifest's order, as lowercase hex. Streamed where the
 * runtime can (workerd's DigestStream), so the weights are not copied into one buffer.
 */
export async function filesDigest(parts: ArrayBuffer[]): Promise<string> {
  const Stream = (
    crypto as unknown as {
      DigestStream?: new (algorithm: string) => WritableStream<ArrayBuffer> & { digest: Promise<ArrayBuffer> }
    }
  ).DigestStream
  let digest: ArrayBuffer
  if (Stream) {
    const stream = new Stream('SHA-256')
    const writer = stream.getWriter()
    for (const part of parts) await writer.write(part)
    await writer.close()
    digest = await stream.digest
  } else {
    const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
    let at = 0
    for (const part of parts) all.set(new Uint8Array(part), (at += part.byteLength) - part.byteLength)
    digest = await crypto.subtle.digest('SHA-256', all)
  }
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('')
}

/**
 * Reads `<dir>/model.json` and its shards, in the manner of tfjs-node's file-system handler.
 * The shards stay separate ArrayBuffers (WeightData allows a list), so nothing is copied.
 * A shard shorter or longer than its manifest says fails the load with that reason.
 * With `digest`, the files' digest (`filesDigest`) is put there once they are read.
 * `listed`: the version's files as the repository index lists them (paths in `dir`), whose shards
 * are read at once, beside model.json, instead of after it; model.json's manifest still says which
 * shards the weights are, and a shard it names that the index did not list is read then.
 */
export function storeHandler(
  store: ModelStore,
  dir: string,
  digest?: { value?: string },
  listed: readonly string[] = [],
): Required<Pick<tf.io.IOHandler, 'load'>> {
  return {
    async load() {
      const early = new Map<string, Promise<ArrayBuffer>>()
      // model.json and these fill the simultaneous reads a Worker may make.
      for (const path of listed.filter((p) => p !== 'model.json').slice(0, MAX_PARALLEL_SHARDS - 1)) {
        let key: string
        try {
          key = shardPath(dir, path)
        } catch {
          continue // not a shard this handler would read; the manifest's paths are checked below
        }
        const read = readFile(store, key)
        // Its failure is reported where the manifest's shard is read, if the manifest names it.
        read.catch(() => {})
        early.set(key, read)
      }
      const raw = await readFile(store, `${dir}/model.json`)
      let json: tf.io.ModelJSON
      try {
        json = JSON.parse(new TextDecoder().decode(raw)) as tf.io.ModelJSON
      } catch (error) {
        throw new Error(`${dir}/model.json is not valid JSON: ${(error as Error).message}`)
      }
      if (
        typeof json !== 'object' ||
        json === null ||
        json.modelTopology == null ||
        !Array.isArray(json.weightsManifest)
      ) {
        throw new Error(`${dir}/model.json has no modelTopology or weightsManifest: it is not a TF.js model`)
      }
      return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const specs = tf.io.getWeightSpecs(manifest)
        const paths = manifest.flatMap((group) => group.paths.map((p) => shardPath(dir, p)))
        const buffers: ArrayBuffer[] = []
        for (let i = 0; i < paths.length; i += MAX_PARALLEL_SHARDS) {
          buffers.push(
            ...(await Promise.all(
              paths.slice(i, i + MAX_PARALLEL_SHARDS).map((p) => early.get(p) ?? readFile(store, p)),
            )),
          )
        }
        const expected = manifestBytes(specs)
        if (expected !== undefined) {
          const actual = buffers.reduce((n, b) => n + b.byteLength, 0)
          if (actual !== expected) {
            throw new Error(`${dir}: weight shards hold ${actual} bytes but the manifest describes ${expected}`)
          }
        }
        if (digest) digest.value = await filesDigest([raw, ...buffers])
        return [specs, buffers]
      })
    },
  }
}
