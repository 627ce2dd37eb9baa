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

/** Builds the index: `name` is the one model in it, and nothing is skipped. */
async function expectIndexedAlone(name: string) {
  const { index, skipped } = await build()
  expect(skipped).toEqual([])
  expect(Object.keys(index.models)).toEqual([name])
}

beforeEach(() => {
  repo = mkdtempSync(join(tmpdir(), 'build-index-'))
})
afterEach(() => rmSync(repo, { recursive: true, force: true }))

describe('build-index', () => {
  it('indexes a sound model and says nothing', async () => {
    iris('iris')
    await expectIndexedAlone('iris')
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
    await expectIndexedAlone('centernet')
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
    await expectIndexedAlone('nchw')
  })

  describe('text inputs', () => {
    const SPAM = join(ROOT, 'model-assets/spam')
    /** A copy of the bundled spam model (its tokenizer.json beside model.json) as <repo>/<name>/, returned its version folder. */
    function spam(name: string): string {
      cpSync(SPAM, join(repo, name), { recursive: true })
      return join(repo, name, '1')
    }

    it('indexes a text model whose tokenizer runs and fits its embedding', async () => {
      spam('spam')
      await expectIndexedAlone('spam')
    })

    it('skips a version whose tokenizer file is missing or is not a tokenizer, naming it', async () => {
      rmSync(join(spam('gone'), 'tokenizer.json'))
      writeFileSync(join(spam('broken'), 'tokenizer.json'), JSON.stringify({ version: '1.0' }))
      const { index, skipped } = await build()
      expect(index.models).toEqual({})
      expect(skipped).toEqual([
        'broken/1: tokenizer.json is not a tokenizer.json this server can run: not a tokenizer.json: it has no "model"',
        "gone/1: input 'input_ids' is fed from tokenizer.json, which is not in the version's folder",
      ])
    })

    it('skips a version whose tokenizer has more token ids than the embedding its input indexes', async () => {
      const dir = spam('wide')
      const tokenizer = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'))
      // The model's Embedding takes 4 000 ids: a vocabulary of 4 001 would index past it.
      tokenizer.model.vocab['zzzz-one-too-many'] = 4000
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer))
      const { skipped } = await build()
      expect(skipped).toEqual([
        "wide/1: tokenizer.json has 4001 token ids, but input 'input_ids' indexes an embedding of 4000: ids past 3999 would fail",
      ])
    })

    it('refuses inputs fed from one tokenizer with different lengths', async () => {
      spam('uneven')
      const path = join(repo, 'uneven/config.json')
      const config = JSON.parse(readFileSync(path, 'utf8'))
      config.inputs.attention_mask = { text: { tokenizer: 'tokenizer.json', max_length: 64, field: 'attention_mask' } }
      writeFileSync(path, JSON.stringify(config))
      const { skipped } = await build()
      expect(skipped).toEqual([
        "uneven: config.json is invalid: inputs fed from tokenizer.json share one encoding: max_length and padding must equal input 'input_ids''s (128, max_length) at inputs.attention_mask.text",
      ])
    })
  })
})
