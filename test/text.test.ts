/** Text in: tokenizers run in the Worker, text classification and embeddings in Workers AI's shapes. */
import { env } from 'cloudflare:workers'
import { describe, expect, inject, it } from 'vitest'
import { TextTokenizer } from '../src/protocols/text/tokenizer'
import { binaryInfer, call, post } from './support/helpers'
import { truncatedIds } from './support/truncate'

const expected = inject('textExpectations')
const TEXT_SET = expected.texts

const error = async (res: Response) => ((await res.json()) as { error: string }).error
const close = (actual: number[], wanted: number[], tolerance: number) => {
  expect(actual).toHaveLength(wanted.length)
  actual.forEach((v, i) =>
    expect(Math.abs(v - wanted[i]!), `element ${i}: ${v} vs ${wanted[i]}`).toBeLessThanOrEqual(tolerance),
  )
}

describe('tokenizers in the Worker', () => {
  for (const kind of ['wordpiece', 'bpe'] as const) {
    const { json, around, ids } = expected.tokenizers[kind]
    const tokenizer = new TextTokenizer(JSON.parse(json))

    it(`${kind}: encodes every text of the set as @huggingface/tokenizers does in Node`, () => {
      ids.forEach((wanted, i) => {
        const batch = tokenizer.encode([TEXT_SET[i]!], 8192, 'longest')
        expect(Array.from(batch.fields.ids), `text ${i}`).toEqual(wanted)
        expect(Array.from(batch.fields.attention_mask)).toEqual(wanted.map(() => 1))
        expect(batch.truncated).toBe(0)
      })
    })

    it(`${kind}: cuts a long text to max_length keeping the special tokens, and pads with the pad id`, () => {
      const batch = tokenizer.encode(TEXT_SET, 16, 'max_length')
      expect(batch.length).toBe(16)
      ids.forEach((full, row) => {
        const wanted = truncatedIds(full, around, 16)
        const got = Array.from(batch.fields.ids.subarray(row * 16, (row + 1) * 16))
        expect(got, `text ${row}`).toEqual([...wanted, ...new Array<number>(16 - wanted.length).fill(tokenizer.padId)])
        const mask = Array.from(batch.fields.attention_mask.subarray(row * 16, (row + 1) * 16))
        expect(mask).toEqual([...wanted.map(() => 1), ...new Array<number>(16 - wanted.length).fill(0)])
      })
      expect(batch.truncated).toBe(ids.filter((full) => full.length > 16).length)
    })
  }

  it('pads to the longest text of the request with padding "longest"', () => {
    const tokenizer = new TextTokenizer(JSON.parse(expected.tokenizers.wordpiece.json))
    const batch = tokenizer.encode(['a', 'a b c d'], 128, 'longest')
    expect(batch.length).toBe(6)
    expect(Array.from(batch.fields.attention_mask)).toEqual([1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1])
  })
})

describe(':classify on the spam model', () => {
  it('answers {"text": "…"} with labels, as tf.js in Node scores it', async () => {
    const res = await post('/v1/models/spam:classify', { text: expected.spam.texts[0] })
    expect(res.status).toBe(200)
    const ranked = (await res.json()) as Array<{ label: string; score: number }>
    expect(ranked.map((r) => r.label)).toEqual(['spam', 'ham'])
    const [ham, spam] = expected.spam.scores[0]!
    close([ranked[0]!.score, ranked[1]!.score], [spam!, ham!], 1e-4)
  })

  it('answers a list of texts with a list per text, in order', async () => {
    const res = await post('/v1/models/spam:classify', { text: expected.spam.texts })
    expect(res.status).toBe(200)
    const rows = (await res.json()) as Array<Array<{ label: string; score: number }>>
    expect(rows).toHaveLength(expected.spam.texts.length)
    rows.forEach((row, i) => {
      const scores = Object.fromEntries(row.map((r) => [r.label, r.score]))
      close([scores.ham!, scores.spam!], expected.spam.scores[i]!, 1e-4)
    })
  })

  it("answers TF Serving's instances, as strings or keyed by input, with results", async () => {
    for (const instances of [
      expected.spam.texts.slice(0, 2),
      expected.spam.texts.slice(0, 2).map((text) => ({ input_ids: text })),
    ]) {
      const res = await post('/v1/models/spam:classify', { instances })
      expect(res.status).toBe(200)
      const { results } = (await res.json()) as { results: Array<Array<[string, number]>> }
      results.forEach((row, i) => {
        const scores = Object.fromEntries(row)
        close([scores.ham!, scores.spam!], expected.spam.scores[i]!, 1e-4)
      })
    }
  })

  it('counts the texts cut to max_length in X-Truncated', async () => {
    const long = 'free money '.repeat(200)
    const res = await post('/v1/models/spam:classify', { text: [long, 'short', long] })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-truncated')).toBe('2')
    const short = await post('/v1/models/spam:classify', { text: 'short' })
    expect(short.headers.get('x-truncated')).toBeNull()
  })

  it('refuses bad texts with a 4xx naming the field', async () => {
    const cases: Array<[unknown, number, RegExp]> = [
      [{ text: [] }, 400, /'text' is an empty list/],
      [{ text: 42 }, 400, /'text' must be a string or a list of strings, got number/],
      [{ text: ['ok', { a: 1 }] }, 400, /'text\[1\]' must be a string, got object/],
      [{ text: new Array(101).fill('x') }, 400, /101 texts, more than the limit of 100 \(MAX_TEXTS\)/],
      [
        { text: 'x'.repeat(16 * 1024 + 1) },
        413,
        /'text': the text is 16385 bytes, more than the limit of 16384 \(MAX_TEXT_BYTES\)/,
      ],
      [{ instances: ['ok', 7] }, 400, /'instances\[1\]' must be a string, got number/],
      [{ instances: [{ input_ids: 'a', other: 'b' }] }, 400, /'instances\[0\]': a text model takes one text per row/],
    ]
    for (const [body, status, message] of cases) {
      const res = await post('/v1/models/spam:classify', body)
      expect([res.status, await error(res)], JSON.stringify(body).slice(0, 80)).toEqual([
        status,
        expect.stringMatching(message),
      ])
    }
  })

  it('refuses text for a model that is not fed from text, saying what to add', async () => {
    const res = await post('/v1/models/digits:classify', { text: 'seven' })
    expect(res.status).toBe(400)
    expect(await error(res)).toMatch(
      /model 'digits' cannot take text: input 'image' has no tokenizer \(inputs\.image\.text in its config\.json\)/,
    )
  })
})

describe(':embed', () => {
  it('answers {"text": [...]} with one mean-pooled, normalized vector per text, as computed in Node', async () => {
    const res = await post('/v1/models/spam-embed:embed', { text: expected.embed.texts })
    expect(res.status).toBe(200)
    const body = (await res.json()) as { shape: number[]; data: number[][]; pooling: string }
    expect(body.shape).toEqual([expected.embed.texts.length, 16])
    expect(body.pooling).toBe('mean')
    body.data.forEach((vector, i) => close(vector, expected.embed.vectors[i]!, 1e-5))
  })

  it('answers one text alone the same as within a list (padding "longest" masks the rest)', async () => {
    const res = await post('/v1/models/spam-embed:embed', { text: expected.embed.texts[0] })
    const body = (await res.json()) as { shape: number[]; data: number[][] }
    expect(body.shape).toEqual([1, 16])
    close(body.data[0]!, expected.embed.vectors[0]!, 1e-5)
  })

  it('is a 400 on a model without "embed", saying what to add', async () => {
    const res = await post('/v1/models/spam:embed', { text: 'hello' })
    expect(res.status).toBe(400)
    expect(await error(res)).toMatch(/model 'spam' has no "embed" in its config.json, so it cannot embed; add "embed"/)
  })
})

describe('Open Inference Protocol BYTES', () => {
  it('feeds the text-fed inputs from one BYTES input of strings', async () => {
    const res = await post('/v2/models/spam-embed/infer', {
      inputs: [{ name: 'input_ids', datatype: 'BYTES', shape: [1], data: [expected.embed.texts[1]] }],
    })
    expect(res.status).toBe(200)
    const body = (await res.json()) as { outputs: Array<{ name: string; shape: number[] }> }
    expect(body.outputs[0]!.name).toBe('last_hidden_state')
    expect(body.outputs[0]!.shape[0]).toBe(1)
    expect(body.outputs[0]!.shape[2]).toBe(16)
  })

  it('takes texts in the binary extension, and refuses invalid UTF-8 naming the element', async () => {
    const element = (bytes: Uint8Array) => {
      const out = new Uint8Array(4 + bytes.length)
      new DataView(out.buffer).setUint32(0, bytes.length, true)
      out.set(bytes, 4)
      return out
    }
    const send = (payload: Uint8Array) =>
      call('/v2/models/spam/infer', binaryInfer([{ name: 'input_ids', datatype: 'BYTES', shape: [1], data: payload }]))
    const good = await send(element(new TextEncoder().encode(expected.spam.texts[0]!)))
    expect(good.status).toBe(200)
    const { outputs } = (await good.json()) as { outputs: Array<{ data: number[] }> }
    close(outputs[0]!.data, expected.spam.scores[0]!, 1e-4)
    const bad = await send(element(new Uint8Array([0x66, 0xff, 0xfe, 0x6f])))
    expect([bad.status, await error(bad)]).toEqual([400, "input 'input_ids'[0]: not valid UTF-8 text"])
  })

  it('shows text inputs as BYTES in metadata, with their tokenization', async () => {
    const res = await call('/v2/models/spam')
    const { inputs } = (await res.json()) as {
      inputs: Array<{ name: string; datatype: string; parameters?: { text?: unknown } }>
    }
    expect(inputs).toEqual([
      {
        name: 'input_ids',
        datatype: 'BYTES',
        shape: [-1],
        parameters: {
          content_types: ['text/plain; charset=utf-8'],
          text: { tokenizer: 'tokenizer.json', max_length: 128, field: 'ids', padding: 'max_length' },
        },
      },
    ])
  })
})

describe('the Models entrypoint', () => {
  it('run(name, {text}) answers as :classify and :embed do', async () => {
    const caller = (
      env as unknown as {
        RPC_CALLER: {
          call(
            method: string,
            ...args: unknown[]
          ): Promise<{ value?: unknown; error?: { message: string; status: number } }>
        }
      }
    ).RPC_CALLER
    const ranked = (await caller.call('run', 'spam', { text: expected.spam.texts[0] })).value as Array<{
      label: string
      score: number
    }>
    expect(ranked.map((r) => r.label)).toEqual(['spam', 'ham'])
    close([ranked[1]!.score, ranked[0]!.score], expected.spam.scores[0]!, 1e-4)
    const embedded = (await caller.call('run', 'spam-embed', { text: expected.embed.texts })).value as {
      data: number[][]
    }
    embedded.data.forEach((vector, i) => close(vector, expected.embed.vectors[i]!, 1e-5))
    const refused = await caller.call('run', 'spam', { text: [] })
    expect(refused.error).toMatchObject({ status: 400, message: expect.stringMatching(/'text' is an empty list/) })
  })
})
