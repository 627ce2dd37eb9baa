/** The zoo's repository (built once per run by the global setup, test/e2e/support/zoo-repo.ts), served by one `wrangler dev` as `npm run dev` serves it. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { wranglerConfigFor } from '../../setup/assets'
import { sharedZoo, startWranglerDev } from './servers'
import type { WranglerDev } from './servers'

export interface ZooServer<Index> {
  server: WranglerDev
  /** The repository's `_index.json`. */
  index: Index
  /** Stops the server and removes its scratch folder. */
  stop(): Promise<void>
}

/** Every zoo model that fits an isolate, each one's memory measured (cached by digest), served under the default settings. */
export async function startZoo<Index>(waitMs: number): Promise<ZooServer<Index>> {
  const models = await sharedZoo(waitMs)
  const work = mkdtempSync(join(tmpdir(), 'zoo-'))
  try {
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
