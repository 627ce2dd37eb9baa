// The try-it page's image panels in a real browser: headless Debian Chromium driven by playwright-core,
// against `wrangler dev` serving the image models of test/e2e/image-models.ts. Picks a real photo
// (scikit-image's camera, CC0) in the emotion model's panel and checks what the page shows against
// what the API answers for the same bytes; keeps a screenshot in test/artifacts/.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import type { BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT, startWranglerDev } from './servers'
import type { WranglerDev } from './servers'
import { imageRepository, PHOTOS } from './image-models'

/** Debian's chromium (`apt-get install chromium`; .ci/run installs it). Never a downloaded browser. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const ARTIFACTS = join(ROOT, 'test/artifacts')
const available = existsSync(CHROMIUM)
if (!available) console.warn(`[images-browser.test] skipped: no Chromium at ${CHROMIUM} (install it: apt-get install -y chromium)`)

let server: WranglerDev
let context: BrowserContext
let page: Page
let profile: string
let repo: string

describe.skipIf(!available)('the image panels of the try-it page in Chromium', () => {
  beforeAll(async () => {
    repo = await imageRepository()
    server = await startWranglerDev({ assetsDir: repo })
    profile = mkdtempSync(join(tmpdir(), 'warmserve-chromium-'))
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1200, height: 1000 },
    })
    page = context.pages()[0] ?? (await context.newPage())
    // The page must load nothing from anywhere but the Worker (blob: URLs are the photo's own preview).
    await page.route(/^(?!http:\/\/127\.0\.0\.1:|blob:)/, (route) => route.abort())
  })

  afterAll(async () => {
    await context?.close()
    await server?.stop()
    if (profile) rmSync(profile, { recursive: true, force: true })
    if (repo) rmSync(repo, { recursive: true, force: true })
  })

  it('has a panel for every image model, and none for the others', async () => {
    const failed: string[] = []
    page.on('pageerror', (e) => failed.push(e.message))
    await page.goto(`${server.url}/`)
    await page.waitForSelector('body[data-images="listed"]', { timeout: 60_000 })
    const panels = await page.locator('section.image-model').evaluateAll((sections) => sections.map((s) => s.getAttribute('data-model')))
    expect(panels.sort()).toEqual(['digits', 'human-emotion', 'human-liveness', 'pixels'])
    expect(await page.locator('tr[data-model="digits"]').innerText()).toContain('image BYTES [-1]')
    expect(failed).toEqual([])
  })

  it('classifies a picked photo as the API does, showing the input the model gets and the call', async () => {
    const photo = join(PHOTOS, 'camera.png')
    const panel = page.locator('section.image-model[data-model="human-emotion"]')
    await panel.locator('input[type="file"]').setInputFiles(photo)
    const api = (await (
      await fetch(`${server.url}/v1/models/human-emotion:classify`, { method: 'POST', body: readFileSync(photo), headers: { 'content-type': 'image/png' } })
    ).json()) as { label: string; score: number }[]
    await expect.poll(() => panel.locator('output').innerText(), { timeout: 30_000 }).toBe(api[0]!.label)
    // classify.top_k is 7: one bar per label returned, best first.
    expect(await panel.locator('.bars .bar').count()).toBe(api.length)
    expect(await panel.locator('.bars > span:nth-child(3n+1)').allInnerTexts()).toEqual(api.map((r) => r.label))
    const size = await panel.locator('canvas.model-input').evaluate((c) => [Number(c.getAttribute('width')), Number(c.getAttribute('height'))])
    expect(size).toEqual([64, 64])
    const call = panel.locator('dl.call')
    expect(await call.locator('dd[data-field="status"]').innerText()).toBe('200')
    expect(await call.locator('dd[data-field="X-Model-Cache"]').innerText()).toMatch(/^(hit|miss|joined)$/)
    expect(await call.locator('dd[data-field="Server-Timing infer"]').innerText()).toMatch(/^\d+ ms$/)
    mkdirSync(ARTIFACTS, { recursive: true })
    const path = join(ARTIFACTS, 'try-it-images.png')
    await page.screenshot({ path, fullPage: true })
    expect(existsSync(path)).toBe(true)
  })

  it("shows the Worker's refusal of a file that is not an image", async () => {
    const panel = page.locator('section.image-model[data-model="human-liveness"]')
    await panel.locator('input[type="file"]').setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not a picture') })
    await expect.poll(() => panel.locator('output').innerText(), { timeout: 30_000 }).toBe('error')
    expect(await panel.locator('dl.call p.error').innerText()).toMatch(/not a JPEG, PNG or WebP image/)
    expect(await panel.locator('dl.call dd[data-field="status"]').innerText()).toBe('400')
  })
})
