// The try-it page's image panels in a real browser: headless Debian Chromium driven by playwright-core,
// against the deploy bundle in workerd serving the image models of test/e2e/support/image-models.ts. Picks a real photo
// (scikit-image's camera, CC0) in the emotion model's panel and checks what the page shows against
// what the API answers for the same bytes; keeps a screenshot in test/artifacts/.
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ARTIFACTS, CHROMIUM, chromiumAvailable as available, openChromium } from './support/chromium'
import { PHOTOS } from './support/image-models'
import { sharedChromium, sharedFixtureServer } from './support/servers'
import type { SharedServer } from './support/servers'

if (!available)
  console.warn(`[images-browser.test] skipped: no Chromium at ${CHROMIUM} (install it: apt-get install -y chromium)`)

let server: SharedServer
let browser: Awaited<ReturnType<typeof openChromium>> | undefined
let page: Page

describe.skipIf(!available)('the image panels of the try-it page in Chromium', () => {
  beforeAll(async () => {
    server = await sharedFixtureServer()
    // The page may load nothing from anywhere but the Worker; blob: URLs are the picked photo's preview.
    browser = await openChromium(await sharedChromium(), ['blob:'])
    page = browser.page
  })

  afterAll(async () => {
    await browser?.close()
  })

  it('has a panel for every image model, and none for the others', async () => {
    const failed: string[] = []
    page.on('pageerror', (e) => failed.push(e.message))
    await page.goto(`${server.url}/`)
    await page.waitForSelector('body[data-images="listed"]', { timeout: 60_000 })
    const panels = await page
      .locator('section.image-model')
      .evaluateAll((sections) => sections.map((s) => s.getAttribute('data-model')))
    // The fixture repository's image models (an image input in their config.json), detectors
    // included (their panels draw boxes: test/e2e/detect.test.ts), its other models not.
    expect(panels.sort()).toEqual([
      'cache-digits',
      'cache-emotion',
      'centernet',
      'digits',
      'handtrack',
      'human-emotion',
      'human-liveness',
      'pixels',
      'traffic-digits',
      'yolo-tiny',
      'yolo5-tiny',
    ])
    expect(await page.locator('tr[data-model="digits"]').innerText()).toContain('image BYTES [-1]')
    expect(failed).toEqual([])
  })

  it('classifies a picked photo as the API does, showing the input the model gets and the call', async () => {
    const photo = join(PHOTOS, 'camera.png')
    const panel = page.locator('section.image-model[data-model="human-emotion"]')
    await panel.locator('input[type="file"]').setInputFiles(photo)
    const api = (await (
      await fetch(`${server.url}/v1/models/human-emotion:classify`, {
        method: 'POST',
        body: readFileSync(photo),
        headers: { 'content-type': 'image/png' },
      })
    ).json()) as { label: string; score: number }[]
    await expect.poll(() => panel.locator('output').innerText(), { timeout: 30_000 }).toBe(api[0]!.label)
    // classify.top_k is 7: one bar per label returned, best first.
    expect(await panel.locator('.bars .bar').count()).toBe(api.length)
    expect(await panel.locator('.bars > span:nth-child(3n+1)').allInnerTexts()).toEqual(api.map((r) => r.label))
    const size = await panel
      .locator('canvas.model-input')
      .evaluate((c) => [Number(c.getAttribute('width')), Number(c.getAttribute('height'))])
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
    await panel
      .locator('input[type="file"]')
      .setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not a picture') })
    await expect.poll(() => panel.locator('output').innerText(), { timeout: 30_000 }).toBe('error')
    expect(await panel.locator('dl.call p.error').innerText()).toMatch(/not a JPEG, PNG or WebP image/)
    expect(await panel.locator('dl.call dd[data-field="status"]').innerText()).toBe('400')
  })
})
