/**
 * The typed client from another project: client/index.d.ts is up to date with the routes, and a
 * separate TypeScript project — strict, no skipLibCheck, no Cloudflare types (test/node/client-project.ts)
 * — compiles against it with real types (a wrong one is an error, so the types have not decayed to
 * `any`). Both checks run as child processes started when the run starts (test/node/global-setup.ts);
 * each test waits for its check's result.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, inject, it } from 'vitest'

/** The most a check may take, at the lowest priority on a busy machine, before the test fails. */
const DEADLINE_MS = 100_000

async function result(name: string): Promise<{ code: number | null; output: string }> {
  const file = join(inject('clientChecks'), `${name}.json`)
  const deadline = Date.now() + DEADLINE_MS
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`the ${name} check gave no result within ${DEADLINE_MS} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return JSON.parse(readFileSync(file, 'utf8'))
}

describe('the typed client', () => {
  it('compiles in a separate strict project (moduleResolution nodenext)', async () => {
    expect(await result('compile')).toEqual({ code: 0, output: '' })
  })

  it('client/index.d.ts is what npm run build:client makes from the current routes', async () => {
    expect(await result('fresh')).toEqual({ code: 0, output: '' })
  })
})
