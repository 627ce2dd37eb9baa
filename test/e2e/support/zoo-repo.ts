/**
 * The zoo's model repository (scripts/dev/zoo.mjs: 13 TF.js models from npm packages) for
 * test/e2e/zoo.test.ts, assembled and indexed as `npm run dev` builds it, each model's memory
 * measured (build-index, cached by digest). The zoo's committed figures (scripts/dev/zoo-memory.json)
 * seed the cache as it is assembled, so a fresh clone measures only a model whose files or measuring
 * method changed since (test/node/zoo-seed.test.ts then fails); without them, measuring the 13 models
 * took ~36 s of a core. Built by the e2e global setup: in a run of every file it starts with the run,
 * so that what is left (assembling, indexing, any measuring) overlaps the workers project.
 */
import { mkdirSync } from 'node:fs'

/** Writes the zoo into `dir`/models and indexes it there; returns that folder. */
export async function writeZooRepository(dir: string): Promise<string> {
  // Imported here, not at the top: they bring tf.js, which the global setup need not wait for.
  // @ts-expect-error: a plain .mjs script without type declarations
  const { assembleZoo } = (await import('../../../scripts/dev/zoo.mjs')) as {
    assembleZoo: (dir: string, options: { refused: boolean }) => Promise<{ models: string }>
  }
  const { buildRepository } = await import('../../setup/assets')
  mkdirSync(dir, { recursive: true })
  const { models } = await assembleZoo(dir, { refused: false })
  await buildRepository(models, { measure: true })
  return models
}
