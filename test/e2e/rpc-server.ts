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
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { ROOT, startWranglerDev } from '../../scripts/launch.mjs'
import type { WranglerDev } from '../../scripts/launch.mjs'
import { addRpcModels } from './repo-rpc'

/** Starts the caller and warmserve in one `wrangler dev`; `dir` holds the repository and the config copy. */
export async function startRpcServer(): Promise<{ server: WranglerDev; dir: string }> {
  // Imported here, not at the top: build-index brings tf.js, which the global setup need not wait for.
  // @ts-expect-error: a plain .mjs script without type declarations
  const { buildIndex, INDEX_FILE } = (await import('../../scripts/build-index.mjs')) as { buildIndex: (dir: string) => Promise<unknown>; INDEX_FILE: string }
  const dir = mkdtempSync(join(tmpdir(), 'warmserve-e2e-rpc-'))
  try {
    const repo = join(dir, 'models')
    cpSync(join(ROOT, 'model-assets'), repo, { recursive: true, filter: (src) => basename(src) !== INDEX_FILE })
    await addRpcModels(repo)
    const { index, skipped } = (await buildIndex(repo)) as { index: unknown; skipped: string[] }
    if (skipped.length > 0) throw new Error(`rpc repository: ${skipped.join('; ')}`)
    writeFileSync(join(repo, INDEX_FILE), JSON.stringify(index))
    const config = readFileSync(join(ROOT, 'wrangler.toml'), 'utf8')
      .replace(/^main = .*$/m, `main = ${JSON.stringify(join(ROOT, 'src/index.ts'))}`)
      .replace(/^directory = .*$/m, `directory = ${JSON.stringify(repo)}`)
      .replace(/^\[build\]\n(?:[^[\n].*\n)*/m, '')
    writeFileSync(join(dir, 'wrangler.toml'), config)
    return { server: await startWranglerDev({ configs: ['test/e2e/caller/wrangler.toml', join(dir, 'wrangler.toml')] }), dir }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
