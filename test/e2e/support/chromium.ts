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

/**
 * The features Chromium runs without: playwright-core's own (1.65's `chromiumSwitches`; a second
 * `--disable-features` replaces the first rather than adding to it), and the omnibox's WebUI popups.
 * Headless Chromium (156) builds the whole browser window for each context the tests open, and
 * preloads its address bar's two popups, each a page of chrome://omnibox-popup.top-chrome in a renderer
 * of its own: 1.4–2.3 CPU-s a context (measured: a context with about:blank 2.3–3.1 CPU-s, 0.8–0.9
 * without them) that no test looks at.
 */
const DISABLED_FEATURES = [
  'AimEnabled',
  'AvoidCorsURLLoaderRestartOnRedirect',
  'AvoidUnnecessaryBeforeUnloadCheckSync',
  'DestroyProfileOnBrowserClose',
  'HttpsFirstBalancedModeAutoEnable',
  'HttpsUpgrades',
  'LensOverlay',
  'MediaRouter',
  'NetworkTimeServiceQuerying',
  'OptimizationHints',
  'PaintHolding',
  'PreconnectToSearch',
  'TcpPortRandomizationWin',
  'ThirdPartyStoragePartitioning',
  'msEdgeUpdateLaunchServicesPreferredVersion',
  'msForceBrowserSignIn',
  'WebUIOmniboxPopup',
  'WebUIOmniboxAimPopup',
]

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
      `--disable-features=${DISABLED_FEATURES.join(',')}`,
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
