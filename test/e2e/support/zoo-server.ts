/** The zoo's repository (built once per run by the global setup, test/e2e/support/zoo-repo.ts), served by one `wrangler dev` as `npm run dev` serves it. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { wranglerConfigFor } from '../../setup/assets'
import { ROOT, sharedZoo, startWranglerDev } from './servers'
import type { WranglerDev } from './servers'

export interface ZooServer<Index> {
  server: WranglerDev
  /** The repository's folder. */
  models: string
  /** The repository's `_index.json`. */
  index: Index
  /** Stops the server and removes its scratch folder. */
  stop(): Promise<void>
}

/** A `wrangler dev` started by `start` with a scratch folder of its own, which `stop` removes with it. */
async function withScratch(
  prefix: string,
  start: (work: string) => Promise<WranglerDev>,
): Promise<{ server: WranglerDev; stop(): Promise<void> }> {
  const work = mkdtempSync(join(tmpdir(), prefix))
  try {
    const server = await start(work)
    return {
      server,
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

/** Every zoo model that fits an isolate, each one's memory measured (cached by digest), served under the default settings. */
export async function startZoo<Index>(waitMs: number): Promise<ZooServer<Index>> {
  const models = await sharedZoo(waitMs)
  const index = JSON.parse(readFileSync(join(models, '_index.json'), 'utf8')) as Index
  const started = await withScratch('zoo-', (work) =>
    startWranglerDev({ configs: [wranglerConfigFor(models, join(work, 'wrangler.toml'))] }),
  )
  return { ...started, models, index }
}

/**
 * The soak's control (test/e2e/support/zoo-control/): a Worker in a `wrangler dev` of its own that
 * only reads the repository's files through ASSETS, as warmserve's loads read them.
 */
export function startZooControl(models: string): Promise<{ server: WranglerDev; stop(): Promise<void> }> {
  return withScratch('zoo-control-', (work) => {
    const config = join(work, 'wrangler.toml')
    writeFileSync(
      config,
      [
        'name = "warmserve-zoo-control"',
        `main = ${JSON.stringify(join(ROOT, 'test/e2e/support/zoo-control/index.js'))}`,
        'compatibility_date = "2026-11-01"',
        '[assets]',
        `directory = ${JSON.stringify(models)}`,
        'binding = "ASSETS"',
        'run_worker_first = true',
        '',
      ].join('\n'),
    )
    return startWranglerDev({ configs: [config] })
  })
}
