/**
 * The zoo soak's control (test/e2e/zoo.test.ts): a Worker (test/e2e/support/zoo-control/) that only
 * reads the zoo repository's files through ASSETS, as warmserve's loads read them, served by workerd
 * through Miniflare as the zoo itself is, in a workerd process of its own.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bundleAt, ROOT, startBundle } from '../../../scripts/tools/launch.mjs'
import type { BundleServer } from '../../../scripts/tools/launch.mjs'

/** The control's script: a plain module, served as it is (no build). */
const CONTROL = join(ROOT, 'test/e2e/support/zoo-control')

/** Starts the control on the repository `models`, its isolate reachable over the inspector; `stop` removes its scratch folder too. */
export async function startZooControl(models: string): Promise<BundleServer & { inspectorPort: number }> {
  const work = mkdtempSync(join(tmpdir(), 'zoo-control-'))
  try {
    // Its bindings, as wrangler would read them: ASSETS on the repository, the Worker first.
    const config = join(work, 'wrangler.toml')
    writeFileSync(
      config,
      [
        'name = "warmserve-zoo-control"',
        `main = ${JSON.stringify(join(CONTROL, 'index.js'))}`,
        'compatibility_date = "2026-11-01"',
        '[assets]',
        `directory = ${JSON.stringify(models)}`,
        'binding = "ASSETS"',
        'run_worker_first = true',
        '',
      ].join('\n'),
    )
    const server = await startBundle({ bundle: bundleAt(CONTROL), config, inspector: true })
    return {
      ...server,
      inspectorPort: server.inspectorPort!,
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
