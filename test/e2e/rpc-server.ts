/**
 * The `wrangler dev` of test/e2e/rpc.test.ts, started by the global setup beside the other shared
 * servers: a second Worker (test/e2e/caller/) calling warmserve's `Models` entrypoint through a
 * service binding, with the prediction cache on.
 *
 * `wrangler dev -c caller -c warmserve` runs both Workers in one process. Only the first, primary
 * one serves HTTP, and only it takes --assets and --var, so the caller goes first (forwarding what is
 * not its own to warmserve) and warmserve runs from a copy of wrangler.toml pointed at the test's
 * repository, indexed here as its [build] command would.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startWranglerDev } from '../../scripts/launch.mjs'
import type { WranglerDev } from '../../scripts/launch.mjs'
import { copyBundledModels } from './models'
import { addRpcModels } from './repo-rpc'

/** Starts the caller and warmserve in one `wrangler dev`; `dir` holds the repository and the config copy. */
export async function startRpcServer(options: { nice?: number } = {}): Promise<{ server: WranglerDev; dir: string }> {
  // Imported here, not at the top: they bring tf.js (build-index), which the global setup need not wait for.
  const { indexRepository, wranglerConfigFor } = await import('../setup/assets')
  const dir = mkdtempSync(join(tmpdir(), 'warmserve-e2e-rpc-'))
  try {
    const repo = join(dir, 'models')
    copyBundledModels(repo)
    await addRpcModels(repo)
    await indexRepository(repo)
    return { server: await startWranglerDev({ configs: ['test/e2e/caller/wrangler.toml', wranglerConfigFor(repo, join(dir, 'wrangler.toml'))], nice: options.nice }), dir }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
