// Values vitest.config.ts hands the tests through `provide`.
import 'vitest'

declare module 'vitest' {
  export interface ProvidedContext {
    /** What test/text.test.ts compares the Worker's tokenizers and text models against, computed in Node. */
    textExpectations: TextExpectations
    /** How many requests test/soak.test.ts sends. */
    soakRequests: number
    /** How many rounds over the real models test/soak-models.test.ts runs. */
    soakRounds: number
    /** Where test/e2e/support/global-setup.ts hands out the shared `wrangler dev` (test/e2e/support/servers.ts). */
    e2eServers: string
    /** Where test/node/support/global-setup.ts writes the typed client's check results. */
    clientChecks: string
  }
}

export interface TokenizerCase {
  /** tokenizer.json as text. */
  json: string
  /** Special tokens the template puts before and after a text. */
  around: [number, number]
  /** @huggingface/tokenizers' `encode(text).ids` for each of TEXT_SET. */
  ids: number[][]
}

export interface TextExpectations {
  /** TEXT_SET, which `tokenizers[…].ids` encode. */
  texts: string[]
  tokenizers: Record<'wordpiece' | 'bpe', TokenizerCase>
  /** The spam model's softmax for each text, its tokens padded to 128 as the Worker does. */
  spam: { texts: string[]; scores: number[][] }
  /** spam-embed's mean-pooled, normalized vector for each text (padding "longest"). */
  embed: { texts: string[]; vectors: number[][] }
}
