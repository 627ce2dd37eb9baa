/**
 * The shared fixture server (test/e2e/support/servers.ts sharedFixtureServer), started by the global setup:
 * warmserve serving the fixture repository (test/e2e/support/fixture-repo.ts), with a second Worker
 * (test/e2e/support/caller/) in front that calls warmserve's `Models` entrypoint through a service binding
 * for the service-binding tests and forwards every other request to warmserve's HTTP API unchanged.
 *
 * `wrangler dev -c caller -c warmserve` runs both Workers in one process. Only the first, primary
 * one serves HTTP, and only it takes --assets and --var, so the caller goes first and warmserve runs
 * from a copy of wrangler.toml pointed at the repository, indexed here as its [build] command would.
 */
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startWranglerDev } from '../../../scripts/tools/launch.mjs'
import type { WranglerDev } from '../../../scripts/tools/launch.mjs'

/**
 * Writes the repository with `build(repo)`, then starts the caller and warmserve in one `wrangler dev`;
 * `dir` holds the repository and the config copy. `nice()` is asked for the server's CPU priority
 * when it is spawned, after the repository is written (seconds later), not when this is called.
 */
export async function startFixtureServer(
  build: (repo: string) => Promise<void>,
  options: { nice?: () => number | undefined; vars?: Record<string, string> } = {},
): Promise<{ server: WranglerDev; dir: string }> {
  // Imported here, not at the top: they bring tf.js (build-index), which the global setup need not wait for.
  const { buildRepository, wranglerConfigFor } = await import('../../setup/assets')
  const dir = mkdtempSync(join(tmpdir(), 'warmserve-e2e-fixtures-'))
  try {
    const repo = join(dir, 'models')
    await build(repo)
    await buildRepository(repo)
    const config = wranglerConfigFor(repo, join(dir, 'wrangler.toml'))
    // warmserve is not the primary, so `--var` would not reach it: its vars go in its config copy.
    if (options.vars)
      appendFileSync(
        config,
        `\n[vars]\n${Object.entries(options.vars)
          .map(([k, v]) => `${k} = ${JSON.stringify(v)}`)
          .join('\n')}\n`,
      )
    return {
      server: await startWranglerDev({
        configs: ['test/e2e/support/caller/wrangler.toml', config],
        nice: options.nice?.(),
      }),
      dir,
    }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
