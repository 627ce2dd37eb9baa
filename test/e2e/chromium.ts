/** Headless Debian Chromium for the page tests, driven by playwright-core: never a browser playwright downloads. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import type { Page } from 'playwright-core'
import { ROOT } from './servers'

/** Debian's chromium (`apt-get install chromium`; .ci/run installs it). */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
export const ARTIFACTS = join(ROOT, 'test/artifacts')
export const chromiumAvailable = existsSync(CHROMIUM)

/**
 * Starts Chromium with a fresh profile and returns its page, which may load nothing from anywhere
 * but the Worker (127.0.0.1) and the URL schemes in `alsoAllowed` (`blob:` for a picked file's preview).
 */
export async function openChromium(alsoAllowed: string[] = []): Promise<{ page: Page; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'warmserve-chromium-'))
  // A persistent context is how playwright takes a --user-data-dir: a fresh one per run.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1200, height: 1000 },
  })
  const page = context.pages()[0] ?? (await context.newPage())
  const allowed = ['http://127.0.0.1:', ...alsoAllowed]
  await page.route((url) => !allowed.some((prefix) => url.href.startsWith(prefix)), (route) => route.abort())
  return {
    page,
    async close() {
      await context.close()
      rmSync(profile, { recursive: true, force: true })
    },
  }
}
