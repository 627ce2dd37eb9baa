#!/usr/bin/env node
// Publishes a converted TF.js model folder as a new version of a model in the R2 bucket:
//
//   npm run publish-model -- <dir> <name> [version] [--remote] [--signature-change] [--persist-to <dir>] [--port <n>]
//   npm run publish-model -- --config <config.json> <name> [--remote]
//
// Uploads model.json and the weight shards it names to <name>/<version>/, then, last,
// <name>/<version>/manifest.json with each file's size and sha256: the manifest marks the upload as
// complete, and the cron handler validates the files against it before anything is served.
// Without a version, the next one after the highest in the bucket and in model-assets/.
//
// Local (default): writes the bucket `wrangler dev` reads, under .wrangler/state (or --persist-to),
// through miniflare, as `wrangler r2 object put --local` does. It is safe while `wrangler dev` runs.
// --remote: uploads with `wrangler r2 object put --remote` (needs `wrangler login`).
// --signature-change: declares that this version's inputs or outputs differ on purpose.
// --config: uploads <name>/config.json (version_policy, version_labels, …), checked by the cron handler.
//
// The version's memory is measured first (scripts/build/memory/measure.mjs) and uploaded as
// <name>/<version>/memory.json, the same object build-index writes into the index for bundled models;
// a model that cannot fit an isolate's wasm heap even alone is refused here, with its figures.
// --port: the port the local server runs on, for the hint printed at the end (wrangler.toml's [dev] port otherwise).
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { measureVersion, refusal } from '../build/memory/measure.mjs'
import { devUrl } from './dev-address.mjs'

export const MANIFEST_FILE = 'manifest.json'
/** A version's measured memory, beside its files (the `memory` object of the repository index). */
export const MEMORY_FILE = 'memory.json'
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
const VERSION = /^[1-9][0-9]{0,15}$/
const DEFAULT_BUCKET = 'warmserve-models'

/** model.json and the shards its weightsManifest names, each with its size and sha256. */
export function describeFolder(dir) {
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'))
  if (json.modelTopology == null || !Array.isArray(json.weightsManifest)) {
    throw new Error(`${dir}/model.json has no modelTopology or weightsManifest: it is not a TF.js model`)
  }
  const paths = ['model.json', ...json.weightsManifest.flatMap((group) => group.paths)]
  return paths.map((path) => {
    const file = join(dir, path)
    if (!existsSync(file)) throw new Error(`${file} is missing (model.json names it)`)
    const bytes = readFileSync(file)
    return { path, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex'), file }
  })
}

/** The manifest that publish-model writes for these files. */
export function manifestFor(files, { signatureChange = false } = {}) {
  return {
    files: files.map(({ path, bytes, sha256 }) => ({ path, bytes, sha256 })),
    signature_change: signatureChange,
    published_at: new Date().toISOString(),
  }
}

/** The pointer the cron handler writes (src/repository/pointer.ts), from a bucket binding or the remote bucket; undefined when there is none. */
async function readPointer(bucket) {
  if (bucket.pointer) return bucket.pointer()
  const object = await bucket.get('_pointer.json')
  return object ? JSON.parse(await object.text()) : undefined
}

/**
 * Versions of `name` the cron handler accepted: immutable, since isolates keep their weights loaded
 * and the prediction cache keeps their answers. Refused as targets of a new upload.
 */
export async function acceptedVersions(bucket, name) {
  return Object.keys((await readPointer(bucket))?.models?.[name]?.versions ?? {}).map(Number)
}

/**
 * Measures a version folder's memory; throws the refusal when it cannot fit an isolate even alone.
 * Resolves to the `memory` object, or undefined when it cannot be measured before it is served.
 */
export async function checkMemory(dir, name, version) {
  let measured
  try {
    measured = await measureVersion(dir)
  } catch (error) {
    console.warn(`[publish-model] memory not measured (the Worker measures it as it loads): ${error.message}`)
    return undefined
  }
  const why = refusal(`${name}/${version}`, measured.memory)
  if (why) throw new Error(`refused ${why}`)
  return measured.memory
}

/**
 * Uploads a model folder to any R2 bucket API (a Worker binding, miniflare's getR2Bucket):
 * the files first (with `memory`, memory.json too), the manifest last. Returns the manifest. Refuses,
 * before uploading anything, a version number the cron handler has accepted already.
 */
export async function publishVersion(bucket, { dir, name, version, signatureChange = false, memory }) {
  const accepted = await acceptedVersions(bucket, name)
  if (accepted.includes(version)) {
    throw new Error(
      `${name}/${version} is already accepted, and an accepted version never changes (serving isolates and the prediction cache keep it): publish these files as a new number, e.g. ${Math.max(...accepted) + 1}`,
    )
  }
  const files = describeFolder(dir)
  for (const { path, file } of files) await bucket.put(`${name}/${version}/${path}`, readFileSync(file))
  if (memory) await bucket.put(`${name}/${version}/${MEMORY_FILE}`, JSON.stringify(memory, null, 2))
  const manifest = manifestFor(files, { signatureChange })
  await bucket.put(`${name}/${version}/${MANIFEST_FILE}`, JSON.stringify(manifest, null, 2))
  return manifest
}

/** Version folders of a model already in the bucket. */
export async function bucketVersions(bucket, name) {
  const listing = await bucket.list({ prefix: `${name}/`, delimiter: '/' })
  return listing.delimitedPrefixes
    .map((p) => p.slice(name.length + 1, -1))
    .filter((v) => VERSION.test(v))
    .map(Number)
}

function bundledVersions(name) {
  const dir = resolve('model-assets', name)
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter((v) => VERSION.test(v) && statSync(join(dir, v)).isDirectory())
    .map(Number)
}

/** The bucket_name of the MODELS binding in wrangler.toml. */
function bucketName() {
  const toml = existsSync('wrangler.toml') ? readFileSync('wrangler.toml', 'utf8') : ''
  return /\[\[r2_buckets\]\][^[]*?bucket_name\s*=\s*"([^"]+)"/.exec(toml)?.[1] ?? DEFAULT_BUCKET
}

/** Runs `fn(bucket)` on the local bucket `wrangler dev` uses. */
async function withLocalBucket(persistTo, name, fn) {
  const { Miniflare, convertV4MiniflareOptions } = await import('miniflare')
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      modules: true,
      script: 'export default { fetch: () => new Response(null, { status: 404 }) }',
      // wrangler dev keeps its local state in <persist>/v3 (see getDefaultPersistRoot in wrangler).
      resourcePersistencePath: join(resolve(persistTo), 'v3'),
      r2Buckets: { BUCKET: name },
    }),
  )
  try {
    return await fn(await mf.getR2Bucket('BUCKET'))
  } finally {
    await mf.dispose()
  }
}

/** The remote bucket, through `wrangler r2 object put/get --remote`. */
function remoteBucket(name) {
  const wrangler = (args, input) => {
    const result = spawnSync('wrangler', ['r2', 'object', ...args, '--remote'], {
      input,
      encoding: 'buffer',
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    if (result.status !== 0) throw new Error(`wrangler r2 object ${args[0]} ${args[1]} failed`)
    return result.stdout
  }
  return {
    async put(key, body) {
      wrangler(['put', `${name}/${key}`, '--pipe'], typeof body === 'string' ? Buffer.from(body) : body)
    },
    async pointer() {
      let text
      try {
        text = wrangler(['get', `${name}/_pointer.json`, '--pipe']).toString('utf8')
      } catch {
        return undefined // no pointer yet: nothing accepted
      }
      return JSON.parse(text)
    },
  }
}

function parseArgs(argv) {
  const flags = {
    remote: false,
    signatureChange: false,
    persistTo: '.wrangler/state',
    config: undefined,
    url: devUrl(),
  }
  const positional = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--remote') flags.remote = true
    else if (arg === '--local') flags.remote = false
    else if (arg === '--signature-change') flags.signatureChange = true
    else if (arg === '--persist-to') flags.persistTo = argv[++i]
    else if (arg === '--config') flags.config = argv[++i]
    else if (arg === '--port') flags.url = devUrl(['--port', argv[++i]])
    else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`)
    else positional.push(arg)
  }
  return { flags, positional }
}

/** The command line (`npm run publish-model -- …argv`), printing through `log`; throws what went wrong. */
export async function main(argv, { log = console.log } = {}) {
  const { flags, positional } = parseArgs(argv)
  const usage =
    'usage: npm run publish-model -- <dir> <name> [version] [--remote] [--signature-change] [--persist-to <dir>] [--port <n>]\n' +
    '       npm run publish-model -- --config <config.json> <name> [--remote]'
  const [dir, name, versionArg] = flags.config ? [undefined, positional[0]] : positional
  if (!name || (!flags.config && !dir)) throw new Error(usage)
  if (!MODEL_NAME.test(name))
    throw new Error(
      `'${name}' is not a valid model name (letters, digits, '_', '.', '-'; starting with a letter or digit)`,
    )
  if (versionArg !== undefined && !VERSION.test(versionArg))
    throw new Error(`version '${versionArg}' is not a positive integer`)
  const bucket = bucketName()
  const where = flags.remote ? `remote bucket ${bucket}` : `local bucket ${bucket} (${flags.persistTo})`
  // With the version given, the memory check needs no bucket: a version no isolate can hold is refused
  // before one is opened (locally a workerd started for nothing).
  const checked = !flags.config && versionArg ? { memory: await checkMemory(dir, name, Number(versionArg)) } : undefined

  const run = async (target, known) => {
    if (flags.config) {
      JSON.parse(readFileSync(flags.config, 'utf8')) // the cron handler checks the fields; refuse non-JSON here
      await target.put(`${name}/config.json`, readFileSync(flags.config))
      log(`[publish-model] ${name}/config.json → ${where}`)
      return
    }
    const version = versionArg ? Number(versionArg) : Math.max(0, ...bundledVersions(name), ...(await known())) + 1
    const memory = checked ? checked.memory : await checkMemory(dir, name, version)
    const manifest = await publishVersion(target, {
      dir,
      name,
      version,
      signatureChange: flags.signatureChange,
      memory,
    })
    const bytes = manifest.files.reduce((n, f) => n + f.bytes, 0)
    log(`[publish-model] ${name}/${version}: ${manifest.files.length} files, ${bytes} bytes → ${where}`)
    log(
      '[publish-model] the cron handler validates it and publishes it; serving isolates switch within REFRESH_INTERVAL.',
    )
    if (!flags.remote) log(`[publish-model] locally, fire the cron with: curl ${flags.url}/cdn-cgi/local/scheduled`)
  }
  if (flags.remote) {
    const target = remoteBucket(bucket)
    // wrangler cannot list a remote bucket: versions the cron handler has seen are in the pointer.
    await run(target, async () => {
      const pointer = await target.pointer()
      const model = pointer?.models?.[name]
      return [...Object.keys(model?.versions ?? {}), ...Object.keys(model?.rejected ?? {})].map(Number)
    })
  } else {
    await withLocalBucket(flags.persistTo, bucket, (target) => run(target, () => bucketVersions(target, name)))
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).catch((error) => {
    console.error(`[publish-model] ${error.message}`)
    process.exit(1)
  })
}
