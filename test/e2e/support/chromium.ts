/** Headless Debian Chromium for the page tests, driven by playwright-core: never a browser playwright downloads. */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import type { BrowserServer, Page } from 'playwright-core'
import { ROOT } from '../../../scripts/tools/launch.mjs'

/** Debian's chromium (`apt-get install chromium`; .ci/run installs it). */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
export const ARTIFACTS = join(ROOT, 'test/artifacts')
export const chromiumAvailable = existsSync(CHROMIUM)

/** Starts the one Chromium the page tests share (test/e2e/support/global-setup.ts); they connect to it with openChromium. */
export function launchChromium(): Promise<BrowserServer> {
  return chromium.launchServer({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}

/**
 * Opens a page in a fresh context (its own cookies and storage, as a new profile) of the shared
 * Chromium at `wsEndpoint`. The page may load nothing from anywhere but the Worker (127.0.0.1) and
 * the URL schemes in `alsoAllowed` (`blob:` for a picked file's preview).
 */
export async function openChromium(
  wsEndpoint: string,
  alsoAllowed: string[] = [],
): Promise<{ page: Page; close(): Promise<void> }> {
  const browser = await chromium.connect(wsEndpoint)
  const context = await browser.newContext({ viewport: { width: 1200, height: 1000 } })
  const page = await context.newPage()
  const allowed = ['http://127.0.0.1:', ...alsoAllowed]
  await page.route(
    (url) => !allowed.some((prefix) => url.href.startsWith(prefix)),
    (route) => route.abort(),
  )
  return {
    page,
    async close() {
      await context.close()
      await browser.close()
    },
  }
}
