/**
 * The typed client from another project: client/index.d.ts is up to date with the routes, and a
 * separate TypeScript project — strict, no skipLibCheck, no Cloudflare types (test/node/support/client-project.ts)
 * — compiles against it with real types (a wrong one is an error, so the types have not decayed to
 * `any`). Both checks run as child processes started when the run starts (test/node/support/global-setup.ts);
 * each test waits for its check's result.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, inject, it } from 'vitest'
import { ROOT } from '../../scripts/tools/launch.mjs'

/** The most a check may take on a busy machine, once the test waits for it, before the test fails. */
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

/** Whether `version` is in a caret range (`^4.13.19`: 4.13.19 or later, below 5), the form package.json uses. */
function inCaretRange(version: string, range: string): boolean {
  const floor = /^\^(\d+)\.(\d+)\.(\d+)$/.exec(range)
  if (!floor) throw new Error(`peerDependencies.hono is ${range}: a caret range (^major.minor.patch) was expected`)
  const v = version.split('.').map(Number)
  const f = floor.slice(1).map(Number)
  return v[0] === f[0] && (v[1]! > f[1]! || (v[1] === f[1] && v[2]! >= f[2]!))
}

describe('the typed client', () => {
  it('compiles in a separate strict project (moduleResolution nodenext) with the hono warmserve pins', async () => {
    expect(await result('compile')).toEqual({ code: 0, output: '' })
  })

  it('compiles there with the newest hono in its peerDependencies range too', async () => {
    const pinned = JSON.parse(readFileSync(join(ROOT, 'node_modules/hono/package.json'), 'utf8')).version
    const latest = JSON.parse(readFileSync(join(ROOT, 'node_modules/hono-latest/package.json'), 'utf8')).version
    const range = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).peerDependencies.hono
    // Another version than the pinned one, so the client's types meet a hono they were not built with.
    expect(latest).not.toBe(pinned)
    expect(inCaretRange(latest, range)).toBe(true)
    expect(await result('compile-latest')).toEqual({ code: 0, output: '' })
  })

  it('client/index.d.ts is what npm run build:client makes from the current routes', async () => {
    expect(await result('fresh')).toEqual({ code: 0, output: '' })
  })
})
