/** The zoo (scripts/dev/zoo.mjs) assembled in a scratch folder, indexed as `npm run dev` indexes it, and served by one `wrangler dev`. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// @ts-expect-error: a plain .mjs script without type declarations
import { assembleZoo } from '../../../scripts/dev/zoo.mjs'
import { buildRepository, wranglerConfigFor } from '../../setup/assets'
import { startWranglerDev } from './servers'
import type { WranglerDev } from './servers'

export interface ZooServer<Index> {
  server: WranglerDev
  /** The repository's `_index.json`. */
  index: Index
  /** Stops the server and removes the scratch folder. */
  stop(): Promise<void>
}

/** Every zoo model that fits an isolate, each one's memory measured (cached by digest), served under the default settings. */
export async function startZoo<Index>(): Promise<ZooServer<Index>> {
  const work = mkdtempSync(join(tmpdir(), 'zoo-'))
  try {
    const { models } = await assembleZoo(work, { refused: false })
    await buildRepository(models, { measure: true })
    const index = JSON.parse(readFileSync(join(models, '_index.json'), 'utf8')) as Index
    const server = await startWranglerDev({ configs: [wranglerConfigFor(models, join(work, 'wrangler.toml'))] })
    return {
      server,
      index,
      stop: async () => {
        await server.stop()
        rmSync(work, { recursive: true, force: true })
      },
    }
  } catch (error) {
    rmSync(work, { recursive: true, force: true })
    throw error
  }
}
