/**
 * The typed client from another project: client/index.d.ts is up to date with the routes, and a
 * separate TypeScript project — strict, no skipLibCheck, no Cloudflare types (test/node/support/client-project.ts)
 * — compiles against it with real types (a wrong one is an error, so the types have not decayed to
 * `any`). The checks run as child processes started in the background when the run starts
 * (test/node/support/global-setup.ts); each test brings them to the usual priority and waits for its check's result.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, inject, it } from 'vitest'
import { ROOT, setGroupPriorityPatiently } from '../../scripts/tools/launch.mjs'
// @ts-expect-error: a plain .mjs script without type declarations
import { CLIENT_TYPES, readCommitted, sourcesDigest, withDigest } from '../../scripts/dev/build-client.mjs'

/**
 * The most a check may take once the test waits for it, before the test fails. Counted from when the
 * checks run at the usual priority again (foreground): alone on a core a check takes at most 8 CPU-s
 * (build-client's program over src/), beside the other lane's files about twice that, so 100 s fails
 * only a check that hangs. Until then they run in the background, where on a busy machine they may not
 * get a core for minutes: no deadline would fit that.
 */
const DEADLINE_MS = 100_000

/** Waits for `file` to exist, for at most DEADLINE_MS. */
async function appears(file: string, what: string): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`${what} gave no result within ${DEADLINE_MS} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Per round of checks: the checks brought back from the background to the usual priority, once. */
const raised = new Map<string, Promise<void>>()

/** The checks started in the background (global-setup.ts), at the usual priority now that a test waits for them. */
function foreground(dir: string): Promise<void> {
  if (!raised.has(dir)) {
    const pidsFile = join(dir, 'pids.json')
    const raise = appears(pidsFile, "the checks' start").then(async () => {
      const pids = JSON.parse(readFileSync(pidsFile, 'utf8')) as Record<string, number>
      // False for a check that has already ended: its result is there.
      await Promise.all(Object.values(pids).map((pid) => setGroupPriorityPatiently(pid, 0)))
    })
    raised.set(dir, raise)
  }
  return raised.get(dir)!
}

async function result(name: string): Promise<{ code: number | null; output: string }> {
  const dir = inject('clientChecks')
  await foreground(dir)
  const file = join(dir, `${name}.json`)
  await appears(file, `the ${name} check`)
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
    const { code, output } = await result('fresh')
    expect(code, output).toBe(0)
    // Silent where its digest line says it was made from the sources as they are; built and compared otherwise.
    expect([
      '',
      `[build-client] ${CLIENT_TYPES} is what the routes make; its digest line is not (npm run build:client rewrites it)\n`,
    ]).toContain(output)
  })

  it('takes the file as made from the sources only when its digest line says so and its other lines are as written', () => {
    const committed = readFileSync(CLIENT_TYPES, 'utf8')
    const { text } = readCommitted(committed) as { text: string }
    // The committed file carries its digest line, and the line is where withDigest puts it.
    expect(text).not.toBe(committed)
    const digest = 'a'.repeat(64)
    const stamped = withDigest(text, sourcesDigest()) as string
    expect(stamped.split('\n')[2]).toMatch(
      /^\/\/ Made from sources of sha256 [0-9a-f]{64}; its other lines' sha256 [0-9a-f]{64}\.$/,
    )
    expect(readCommitted(stamped)).toEqual({ text, current: true })
    // Made from other sources: the program is built again.
    expect(readCommitted(withDigest(text, digest)).current).toBe(false)
    // A line edited by hand after it was made, its digest line kept: the program is built again.
    expect(readCommitted(stamped.replace('"/v2/health/ready"', '"/v2/health/live"')).current).toBe(false)
    expect(stamped).toContain('"/v2/health/ready"')
    // No digest line at all (a file written before it had one): the program is built again.
    expect(readCommitted(text).current).toBe(false)
  })
})
