/**
 * Starts, on first request, the two `wrangler dev` the e2e files share (test/e2e/servers.ts) — one
 * serving model-assets/ as `npm run dev` does, one serving the fixture repository
 * (test/e2e/fixture-repo.ts) — and stops them after the run; and builds, on first request, the one
 * deploy bundle the files that serve it share. At once in a run of every file; otherwise lazily, so
 * a run of files that do not need them does not pay for them: a small HTTP endpoint on 127.0.0.1 answers `/` and `/fixtures` with a server's
 * URL, port and process group, and `/bundle` with the bundle, as JSON.
 */
import { rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestProject } from 'vitest/node'
import { buildBundle, startWranglerDev } from '../../scripts/launch.mjs'
import type { Bundle, WranglerDev } from '../../scripts/launch.mjs'
import { fixtureRepository } from './fixture-repo'

/** The admin token of the shared `wrangler dev`; the admin API is off without one. */
export const SHARED_ADMIN_TOKEN = 'e2e-shared-admin-token'
/** The shared server's configuration: wrangler.toml as is, plus the admin token. */
const SHARED_VARS = { ADMIN_TOKEN: SHARED_ADMIN_TOKEN }

/** What a test file needs of a shared server: where it listens, and its process group (for its memory). */
const described = ({ url, port, pgid }: WranglerDev) => JSON.stringify({ url, port, pgid })

export default async function setup(project: TestProject) {
  let shared: Promise<WranglerDev> | undefined
  let fixtures: Promise<{ server: WranglerDev; repo: string }> | undefined
  let bundle: Promise<Bundle> | undefined
  const startFixtures = async () => {
    const repo = await fixtureRepository()
    try {
      return { server: await startWranglerDev({ assetsDir: repo, vars: SHARED_VARS }), repo }
    } catch (error) {
      rmSync(repo, { recursive: true, force: true })
      throw error
    }
  }
  const resources: Record<string, () => Promise<string>> = {
    '/fixtures': () => (fixtures ??= startFixtures()).then(({ server }) => described(server)),
    '/': () => (shared ??= startWranglerDev({ vars: SHARED_VARS })).then(described),
    '/bundle': () => (bundle ??= buildBundle()).then((b) => JSON.stringify(b)),
  }
  const broker = createServer((request, response) => {
    const resource = resources[request.url ?? '']
    if (!resource) return void response.writeHead(404, { 'content-type': 'text/plain' }).end(`no ${request.url} here`)
    resource().then(
      (text) => response.writeHead(200, { 'content-type': 'application/json' }).end(text),
      (error: Error) => response.writeHead(500, { 'content-type': 'text/plain' }).end(error.message),
    )
  })
  // A run of every file needs them all: started now, one after another, they come up while the
  // workers project runs instead of after it. A run of chosen files starts only what they ask for.
  const chosen = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern
  if (!chosen?.length) {
    void Object.values(resources).reduce<Promise<unknown>>((previous, start) => previous.then(start, start), Promise.resolve()).catch(() => {})
  }
  await new Promise<void>((resolve, reject) => {
    broker.once('error', reject)
    broker.listen(0, '127.0.0.1', resolve)
  })
  project.provide('e2eServers', `http://127.0.0.1:${(broker.address() as AddressInfo).port}`)
  return async () => {
    broker.close()
    const [dev, fixed] = await Promise.all([shared?.catch(() => undefined), fixtures?.catch(() => undefined)])
    await Promise.all([dev?.stop(), fixed?.server.stop()])
    if (fixed) rmSync(fixed.repo, { recursive: true, force: true })
  }
}
