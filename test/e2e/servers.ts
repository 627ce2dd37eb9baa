/**
 * The servers the end-to-end tests run against, all started by scripts/launch.mjs.
 *
 * Files that need `wrangler dev` serving model-assets/ as `npm run dev` does share one: the first
 * file to ask starts it (test/e2e/global-setup.ts), the rest reuse it, and it stops after the last
 * file. So that no file depends on which ran before it, each one makes the state it asserts on
 * (an admin unload before a cold-load check), and none leaves anything running in it.
 */
import { inject } from 'vitest'

export { ROOT, startBundle, startWranglerDev } from '../../scripts/launch.mjs'
export type { BundleServer, Launched, WranglerDev } from '../../scripts/launch.mjs'
import type { Bundle } from '../../scripts/launch.mjs'

export { SHARED_ADMIN_TOKEN } from './global-setup'
/**
 * Longest wait for the shared server: the launcher's own deadline (120 s) and a stop, within the
 * e2e project's hookTimeout (180 s), so that a failed start reports wrangler's output.
 */
const SHARED_WAIT_MS = 170_000

/** The shared `wrangler dev` (model-assets/, SHARED_VARS), started on the first call of any file. */
export async function sharedDevServer(): Promise<{ url: string }> {
  const response = await fetch(inject('e2eServers'), { signal: AbortSignal.timeout(SHARED_WAIT_MS) })
  const text = await response.text()
  if (response.status !== 200) throw new Error(`the shared wrangler dev did not start:\n${text}`)
  return { url: text }
}

/** The deploy bundle (`wrangler deploy --dry-run`), built once per run for every file that serves it. */
export async function sharedBundle(): Promise<Bundle> {
  const response = await fetch(`${inject('e2eServers')}/bundle`, { signal: AbortSignal.timeout(SHARED_WAIT_MS) })
  const text = await response.text()
  if (response.status !== 200) throw new Error(`the deploy bundle was not built:\n${text}`)
  return JSON.parse(text) as Bundle
}
