/**
 * The servers the end-to-end tests run against, all started by scripts/tools/launch.mjs.
 *
 * Files that need `wrangler dev` serving model-assets/ as `npm run dev` does share one, and files
 * that need models beyond the bundled ones share the deploy bundle serving them through Miniflare
 * (test/e2e/support/fixture-repo.ts, fixture-server.ts): the first file
 * to ask starts it (test/e2e/support/global-setup.ts), the rest reuse it, and it stops after the last file.
 * So that no file depends on which ran before it, each one makes the state it asserts on (an admin
 * unload before a cold-load check), and none leaves anything running in it.
 */
import { inject } from 'vitest'

export { ROOT, startBundle, startWranglerDev } from '../../../scripts/tools/launch.mjs'
export type { BundleServer, Launched, WranglerDev } from '../../../scripts/tools/launch.mjs'
import type { Bundle, WranglerDev } from '../../../scripts/tools/launch.mjs'

export { SHARED_ADMIN_TOKEN } from './global-setup'
/**
 * Longest wait for the shared server: the launcher's own deadline (120 s) and a stop, within the
 * e2e project's hookTimeout (180 s), so that a failed start reports wrangler's output.
 */
const SHARED_WAIT_MS = 170_000

/** Asks the global setup's broker for a shared server or bundle, waiting while it starts or builds. */
async function shared(path: string, what: string, waitMs = SHARED_WAIT_MS): Promise<string> {
  const response = await fetch(`${inject('e2eServers')}${path}`, { signal: AbortSignal.timeout(waitMs) })
  const text = await response.text()
  if (response.status !== 200) throw new Error(`${what}:\n${text}`)
  return text
}

/**
 * A shared server as a test file sees it: where it listens, and for its memory (bench/measure.mjs
 * workerdProcesses) the process group of a `wrangler dev` (`pgid`); a bundle served through Miniflare
 * has none (its one workerd is found by its port).
 */
export type SharedServer = Pick<WranglerDev, 'url' | 'port'> & { pgid?: number }

/** The shared `wrangler dev` (model-assets/, SHARED_VARS), started on the first call of any file. */
export async function sharedDevServer(): Promise<SharedServer> {
  return JSON.parse(await shared('/', 'the shared wrangler dev did not start')) as SharedServer
}

/**
 * The shared fixture server, the deploy bundle in Miniflare: model-assets/ plus the models of
 * test/e2e/support/fixture-repo.ts, behind a caller Worker that reaches warmserve through service
 * bindings (`POST /call`, `POST /classify/…`) and forwards every other request to it
 * (test/e2e/support/fixture-server.ts); started on the first call of any file.
 */
export async function sharedFixtureServer(): Promise<SharedServer> {
  return JSON.parse(await shared('/fixtures', 'the shared fixture server did not start')) as SharedServer
}

/** The shared Chromium's WebSocket endpoint, for openChromium (test/e2e/support/chromium.ts). */
export async function sharedChromium(): Promise<string> {
  return JSON.parse(await shared('/chromium', 'Chromium did not start')) as string
}

/** The deploy bundle (`wrangler deploy --dry-run`), built once per run for every file that serves it. */
export async function sharedBundle(): Promise<Bundle> {
  return JSON.parse(await shared('/bundle', 'the deploy bundle was not built')) as Bundle
}

/**
 * The zoo's repository, indexed with each model's memory measured (test/e2e/support/zoo-repo.ts),
 * built once per run. Measuring 13 models with an empty cache takes minutes on a busy machine: the
 * wait is bounded by `waitMs`, within the calling hook's own timeout.
 */
export async function sharedZoo(waitMs: number): Promise<string> {
  return JSON.parse(await shared('/zoo', 'the zoo repository was not built', waitMs)) as string
}

/** The server of one file alone (test/e2e/support/global-setup.ts OWN_SERVERS), named after the file. */
export async function ownServer(file: 'detect' | 'vanishing-clients'): Promise<SharedServer> {
  return JSON.parse(await shared(`/own/${file}`, `the ${file} server did not start`)) as SharedServer
}
