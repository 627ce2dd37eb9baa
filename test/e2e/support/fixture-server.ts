/**
 * The shared fixture server (test/e2e/support/servers.ts sharedFixtureServer), started by the global setup:
 * warmserve serving the fixture repository (test/e2e/support/fixture-repo.ts), with a second Worker
 * (test/e2e/support/caller/) in front that calls warmserve's `Models` entrypoint through a service binding
 * for the service-binding tests and forwards every other request to warmserve's HTTP API unchanged.
 *
 * Both Workers run in one workerd through Miniflare (scripts/tools/launch.mjs startBundle with `front`),
 * warmserve as the deploy bundle the run builds once, the caller first so that it serves HTTP, as
 * `wrangler dev -c caller -c wrangler.toml` would run them: a start costs about 1.5 CPU-s where a
 * `wrangler dev` costs about 11 (docs/contributing.md). The files' own servers (global-setup.ts
 * OWN_SERVERS) are started the same way, each with a repository of its own.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startBundle } from '../../../scripts/tools/launch.mjs'
import type { Bundle, BundleServer } from '../../../scripts/tools/launch.mjs'

/**
 * Writes the repository with `build(repo)` and indexes it, as the [build] command would, then serves
 * `bundle()` from it with the caller in front; `dir` holds the repository.
 */
export async function startFixtureServer(
  build: (repo: string) => Promise<void>,
  options: { bundle: () => Promise<Bundle>; vars?: Record<string, string> },
): Promise<{ server: BundleServer; dir: string }> {
  // Imported here, not at the top: it brings tf.js (build-index), which the global setup need not wait for.
  const { buildRepository } = await import('../../setup/assets')
  // Built (or being built) while the repository is written; awaited below, so a failure there is not unhandled.
  const bundle = options.bundle()
  bundle.catch(() => {})
  const dir = mkdtempSync(join(tmpdir(), 'warmserve-e2e-fixtures-'))
  try {
    const repo = join(dir, 'models')
    await build(repo)
    await buildRepository(repo)
    return {
      server: await startBundle({
        bundle: await bundle,
        assetsDir: repo,
        vars: options.vars,
        front: 'test/e2e/support/caller/wrangler.toml',
      }),
      dir,
    }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
