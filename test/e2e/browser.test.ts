// The try-it page in a real browser: headless Debian Chromium driven by playwright-core, against
// `wrangler dev` (the shared one). Draws a "1" on the canvas, predicts, checks the label and the cache and timing
// figures, fills the iris form, classifies a text with the spam model, and keeps screenshots in test/artifacts/.
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ARTIFACTS, CHROMIUM, chromiumAvailable as available, openChromium } from './support/chromium'
import { SHARED_ADMIN_TOKEN, sharedChromium, sharedDevServer } from './support/servers'

if (!available)
  console.warn(`[browser.test] skipped: no Chromium at ${CHROMIUM} (install it: apt-get install -y chromium)`)

let server: { url: string }
let browser: Awaited<ReturnType<typeof openChromium>> | undefined
let page: Page

describe.skipIf(!available)('the try-it page in Chromium', () => {
  beforeAll(async () => {
    server = await sharedDevServer()
    // The page must load nothing from anywhere but the Worker.
    browser = await openChromium(await sharedChromium())
    page = browser.page
  })

  afterAll(async () => {
    await browser?.close()
  })

  it('lists the models with their signatures', async () => {
    const failed: string[] = []
    page.on('requestfailed', (r) => failed.push(r.url()))
    page.on('pageerror', (e) => failed.push(e.message))
    await page.goto(`${server.url}/`)
    await page.waitForSelector('body[data-models="listed"]', { timeout: 30_000 })
    const iris = await page.locator('tr[data-model="iris"]').innerText()
    // Each version's state in words, as the index says it after the listing read the metadata: not
    // loaded, or loaded where an earlier request of this server's isolate loaded it.
    expect(iris).toMatch(/\t(not loaded \(loads on first use\)|loaded)\t/)
    expect(iris).toContain('features FP32 [-1, 4]')
    expect(await page.locator('tr[data-model="digits"]').innerText()).toContain('image BYTES [-1]')
    expect(failed).toEqual([])
  })

  it('reads a "1" drawn with the mouse', async () => {
    const box = (await page.locator('#pad').boundingBox())!
    // A slightly slanted vertical stroke down the middle, as a hand draws a one.
    await page.mouse.move(box.x + box.width * 0.54, box.y + box.height * 0.18)
    await page.mouse.down()
    for (let i = 1; i <= 20; i++)
      await page.mouse.move(box.x + box.width * (0.54 - 0.06 * (i / 20)), box.y + box.height * (0.18 + 0.64 * (i / 20)))
    await page.mouse.up()
    await page.click('#digits-predict')
    await expect.poll(() => page.locator('#digits-label').innerText(), { timeout: 20_000 }).toBe('1')
    const call = page.locator('#digits-call')
    expect(await call.locator('dd[data-field="status"]').innerText()).toBe('200')
    // The listing loads no model, so this is normally a miss; wrangler dev may route a request to
    // another isolate, so any outcome is fine as long as it is shown.
    expect(await call.locator('dd[data-field="X-Model-Cache"]').innerText()).toMatch(/^(hit|miss|joined)$/)
    expect(await call.locator('dd[data-field="Server-Timing infer"]').innerText()).toMatch(/^\d+ ms$/)
    expect(await page.locator('#digits-bars .bar').count()).toBe(10)
  })

  it("shows each model's state as the server has it, refreshed without a reload", async () => {
    const row = page.locator('tr[data-model="iris"]')
    // Unloaded behind the page's back: the periodic refresh shows it.
    const unload = await fetch(`${server.url}/admin/models/iris/unload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SHARED_ADMIN_TOKEN}` },
    })
    expect(unload.status).toBe(200)
    await expect.poll(() => row.getAttribute('data-state'), { timeout: 20_000 }).toBe('not-loaded')
    expect(await row.locator('td').nth(2).innerText()).toBe('not loaded (loads on first use)')
    // Loaded by the page's own prediction: the refresh after it shows it at once.
    const refreshes = Number(await page.locator('body').getAttribute('data-refreshes'))
    await page.click('#iris-predict')
    await expect.poll(() => row.getAttribute('data-state'), { timeout: 20_000 }).toBe('loaded')
    expect(await row.locator('td').nth(2).innerText()).toBe('loaded')
    expect(Number(await page.locator('body').getAttribute('data-refreshes'))).toBeGreaterThan(refreshes)
  })

  it('answers the iris form with setosa, and the screenshot is kept', async () => {
    await page.fill('input[name="sepal_length"]', '5.0')
    await page.fill('input[name="sepal_width"]', '3.4')
    await page.fill('input[name="petal_length"]', '1.5')
    await page.fill('input[name="petal_width"]', '0.2')
    await page.click('#iris-predict')
    await expect.poll(() => page.locator('#iris-label').innerText(), { timeout: 20_000 }).toBe('setosa')
    expect(await page.locator('#iris-call dd[data-field="X-Model-Cache"]').innerText()).toMatch(/^(hit|miss|joined)$/)
    expect(await page.locator('#iris-call dd[data-field="X-Model-Version"]').innerText()).toBe('1')
    mkdirSync(ARTIFACTS, { recursive: true })
    const path = join(ARTIFACTS, 'try-it.png')
    await page.screenshot({ path, fullPage: true })
    expect(existsSync(path)).toBe(true)
  })

  it('classifies the text in the spam panel as the API does', async () => {
    await page.waitForSelector('body[data-texts="listed"]', { timeout: 30_000 })
    const panel = page.locator('section.text-model[data-model="spam"]')
    const text = 'Congratulations! You have WON a FREE cruise. Reply now to claim your prize'
    await panel.locator('textarea').fill(text)
    await panel.locator('button').click()
    const api = (await (
      await fetch(`${server.url}/v1/models/spam:classify`, {
        method: 'POST',
        body: JSON.stringify({ text }),
        headers: { 'content-type': 'application/json' },
      })
    ).json()) as { label: string }[]
    await expect.poll(() => panel.locator('output').innerText(), { timeout: 30_000 }).toBe(api[0]!.label)
    expect(await panel.locator('.bars > span:nth-child(3n+1)').allInnerTexts()).toEqual(api.map((r) => r.label))
    expect(await panel.locator('dl.call dd[data-field="status"]').innerText()).toBe('200')
    mkdirSync(ARTIFACTS, { recursive: true })
    await panel.screenshot({ path: join(ARTIFACTS, 'try-it-text.png') })
  })
})
