/**
 * scripts/build/build-index.mjs refuses, at build time, each model the Worker could not serve — with one
 * line that says what to do — and indexes the others.
 */
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { buildIndex, MAX_ASSET_BYTES, writeAssetsIgnore } from '../../scripts/build/build-index.mjs'

interface Built {
  index: { models: Record<string, { versions: Record<string, unknown>; config?: unknown }> }
  skipped: string[]
  oversized: string[]
}

const ROOT = resolve(import.meta.dirname, '../..')
const IRIS = join(ROOT, 'model-assets/iris/1')
let repo: string

/** A copy of the bundled iris as <repo>/<name>/1/, returned. */
function iris(name: string): string {
  const dir = join(repo, name, '1')
  cpSync(IRIS, dir, { recursive: true })
  return dir
}

const build = (options?: object) => buildIndex(repo, options) as Promise<Built>

beforeEach(() => {
  repo = mkdtempSync(join(tmpdir(), 'build-index-'))
})
afterEach(() => rmSync(repo, { recursive: true, force: true }))

describe('build-index', () => {
  it('indexes a sound model and says nothing', async () => {
    iris('iris')
    const { index, skipped } = await build()
    expect(skipped).toEqual([])
    expect(Object.keys(index.models)).toEqual(['iris'])
  })

  it("names the file to rename when a package's model file is not called model.json", async () => {
    const dir = iris('movenet')
    renameSync(join(dir, 'model.json'), join(dir, 'movenet.json'))
    iris('iris')
    const { index, skipped } = await build()
    expect(skipped).toEqual([
      expect.stringMatching(
        /^movenet\/1: no model\.json; the model file is movenet\.json: rename it \(mv \S+movenet\/1\/movenet\.json \S+movenet\/1\/model\.json\)/,
      ),
    ])
    expect(Object.keys(index.models)).toEqual(['iris'])
  })

  it('refuses a version whose shard does not match its manifest', async () => {
    const dir = iris('cut')
    const shard = join(dir, 'group1-shard1of1.bin')
    truncateSync(shard, statSync(shard).size - 4)
    const { index, skipped } = await build()
    expect(skipped).toEqual([
      `cut/1: weight group 1 (group1-shard1of1.bin) holds 520 bytes but model.json describes 524: a shard is truncated or from another model`,
    ])
    expect(index.models).toEqual({})
  })

  it('refuses a file over 25 MiB, says how to reshard it, and leaves it out of the assets', async () => {
    const dir = iris('big')
    // Sparse: no 25 MiB is written to disk.
    truncateSync(join(dir, 'group1-shard1of1.bin'), MAX_ASSET_BYTES + 1)
    iris('iris')
    const { index, skipped, oversized } = await build()
    expect(skipped).toEqual([
      expect.stringMatching(
        /^big\/1: group1-shard1of1\.bin is 25\.0 MiB, over the 25 MiB a static-asset file may be: npm run reshard -- \S*big\/1$/,
      ),
    ])
    expect(oversized).toEqual(['big/1/group1-shard1of1.bin'])
    expect(Object.keys(index.models)).toEqual(['iris'])
  })

  it('refuses a config.json the Worker would refuse, suggesting the key that was meant', async () => {
    iris('typo')
    writeFileSync(
      join(repo, 'typo/config.json'),
      JSON.stringify({ max_batch: 2, batching: { max_batch_size: 4, max_queue_delay: 1 } }),
    )
    iris('iris')
    const { index, skipped } = await build()
    expect(skipped).toEqual([
      'typo: config.json is invalid: Invalid input: expected number, received undefined at batching.max_queue_delay_ms; ' +
        'unknown key "max_queue_delay" at batching (did you mean "max_queue_delay_ms"?); unknown key "max_batch" (did you mean "max_batch_size"?)',
    ])
    expect(Object.keys(index.models)).toEqual(['iris'])
  })

  it('keeps an invalid config.json unchecked when asked (the tests of the Worker’s own check)', async () => {
    iris('typo')
    writeFileSync(join(repo, 'typo/config.json'), JSON.stringify({ max_batch: 2 }))
    const { index, skipped } = await build({ keepInvalidConfig: ['typo'] })
    expect(skipped).toEqual([])
    expect(index.models.typo?.config).toEqual({ max_batch: 2 })
  })
})

describe('.assetsignore', () => {
  it("lists the oversized files in build-index's own block and keeps the user's lines", () => {
    writeFileSync(join(repo, '.assetsignore'), '/notes.txt\n')
    writeAssetsIgnore(repo, ['big/1/group1-shard1of1.bin'])
    const text = readFileSync(join(repo, '.assetsignore'), 'utf8')
    expect(text).toMatch(/^\/notes\.txt\n# build-index: .*\n\/big\/1\/group1-shard1of1\.bin\n# end build-index\n$/)
    writeAssetsIgnore(repo, [])
    expect(readFileSync(join(repo, '.assetsignore'), 'utf8')).toBe('/notes.txt\n')
  })

  it('is not written at all when nothing is oversized and the user has none', () => {
    writeAssetsIgnore(repo, [])
    expect(existsSync(join(repo, '.assetsignore'))).toBe(false)
  })
})

describe('build-index checks a detect block against the model it names', () => {
  const HUMAN = join(ROOT, 'node_modules/@vladmandic/human/models')
  /** A copy of one of human's detectors as <repo>/<name>/1/model.json, with `config` beside it. */
  function detector(name: string, source: 'centernet' | 'handtrack', config: object): void {
    const dir = join(repo, name, '1')
    mkdirSync(dir, { recursive: true })
    copyFileSync(join(HUMAN, `${source}.json`), join(dir, 'model.json'))
    copyFileSync(join(HUMAN, `${source}.bin`), join(dir, `${source}.bin`))
    writeFileSync(join(repo, name, 'config.json'), JSON.stringify(config))
  }
  const coco = Array.from({ length: 80 }, (_, i) => `class${i}`)
  const centernet = (detect: object, labels: unknown = coco) => ({
    inputs: { 'tower_0/images': { image: { size: [512, 512], channels: 3, range: [0, 255] } } },
    labels,
    detect: { output: 'tower_0/detections', columns: 'box,score,class', ...detect },
  })

  it('indexes a detector whose detect block fits, its labels in a file', async () => {
    detector('centernet', 'centernet', centernet({}, 'labels.txt'))
    writeFileSync(join(repo, 'centernet', 'labels.txt'), `${coco.join('\n')}\n`)
    const { index, skipped } = await build()
    expect(skipped).toEqual([])
    expect(Object.keys(index.models)).toEqual(['centernet'])
  })

  it.each([
    [
      'an output the model does not have',
      centernet({ output: 'tower_0/boxes' }),
      /^bad: config\.json detect does not fit the model: version 1: detect\.output names 'tower_0\/boxes', which the model does not have; its outputs are 'tower_0\/wh', 'tower_0\/keypoints', 'tower_0\/detections'$/,
    ],
    [
      'rows no columns layout fits',
      centernet({ columns: 'box,classes' }),
      /detect\.output 'tower_0\/detections' has shape \[1, 100, 6\], but rows of box,classes with 80 labels hold 84 values \(4 \+ 80\); its rows fit 2 classes or 96 classes: are the labels short, or is columns wrong\?/,
    ],
    [
      'an output of the wrong rank',
      centernet({ output: 'tower_0/wh' }),
      /detect\.output 'tower_0\/wh' has shape \[1, 128, 128, 4\]; it must be \[1, N, K\] or \[1, K, N\]/,
    ],
    [
      'a detect block without labels',
      { ...centernet({}), labels: undefined },
      /^bad: config\.json is invalid: detect needs labels: the class names, in the order of the class indices at detect$/,
    ],
    [
      'neither output nor outputs',
      { ...centernet({}), detect: { columns: 'box,score,class' } },
      /columns needs output: the tensor whose rows they describe at detect\.output/,
    ],
  ])('skips a detector with %s, naming the model and the tensor', async (_what, config, message) => {
    detector('bad', 'centernet', config)
    const { index, skipped } = await build()
    expect(skipped).toEqual([expect.stringMatching(message)])
    expect(index.models).toEqual({})
  })

  it('skips separate outputs whose per-class scores the labels do not count', async () => {
    const hands = ['hand', 'fist', 'pinch', 'point', 'face', 'tip']
    const config = (labels: string[]) => ({
      inputs: { 'input_tensor:0': { image: { size: [320, 320], channels: 3, range: [0, 255] } } },
      labels,
      detect: {
        outputs: { boxes: 'Identity_6:0', scores: 'Identity_7:0' },
        box_format: 'yxyx',
        box_units: 'normalized',
        class_offset: 1,
      },
    })
    detector('short', 'handtrack', config(hands))
    detector('hands', 'handtrack', config([...hands, 'pinchtip']))
    const { index, skipped } = await build()
    expect(skipped).toEqual([
      "short: config.json detect does not fit the model: version 1: detect.outputs.scores 'Identity_7:0' has shape [1, 12804, 8]: 8 class scores, but labels (6) + class_offset 1 name 7",
    ])
    expect(Object.keys(index.models)).toEqual(['hands'])
  })

  it('accepts an image input laid out NCHW', async () => {
    iris('nchw')
    writeFileSync(
      join(repo, 'nchw', 'config.json'),
      JSON.stringify({ inputs: { x: { image: { size: [416, 416], channels: 3, range: [0, 1], layout: 'nchw' } } } }),
    )
    const { index, skipped } = await build()
    expect(skipped).toEqual([])
    expect(Object.keys(index.models)).toEqual(['nchw'])
  })
})
