/**
 * Starts, on first request, the one `wrangler dev` the e2e files share (test/e2e/servers.ts), and
 * stops it after the run; and builds, on first request, the one deploy bundle the files that serve
 * it share. Lazily, so a run of files that do not need them does not pay for them: a small HTTP
 * endpoint on 127.0.0.1 answers `/` with the server's URL and `/bundle` with the bundle as JSON.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestProject } from 'vitest/node'
import { buildBundle, startWranglerDev } from '../../scripts/launch.mjs'
import type { Bundle, WranglerDev } from '../../scripts/launch.mjs'

/** The admin token of the shared `wrangler dev`; the admin API is off without one. */
export const SHARED_ADMIN_TOKEN = 'e2e-shared-admin-token'
/** The shared server's configuration: wrangler.toml as is, plus the admin token. */
const SHARED_VARS = { ADMIN_TOKEN: SHARED_ADMIN_TOKEN }

export default async function setup(project: TestProject) {
  let shared: Promise<WranglerDev> | undefined
  let bundle: Promise<Bundle> | undefined
  const broker = createServer((request, response) => {
    const answer: Promise<string> =
      request.url === '/bundle'
        ? (bundle ??= buildBundle()).then((b) => JSON.stringify(b))
        : (shared ??= startWranglerDev({ vars: SHARED_VARS })).then((server) => server.url)
    answer.then(
      (text) => response.writeHead(200, { 'content-type': 'text/plain' }).end(text),
      (error: Error) => response.writeHead(500, { 'content-type': 'text/plain' }).end(error.message),
    )
  })
  await new Promise<void>((resolve, reject) => {
    broker.once('error', reject)
    broker.listen(0, '127.0.0.1', resolve)
  })
  project.provide('e2eServers', `http://127.0.0.1:${(broker.address() as AddressInfo).port}`)
  return async () => {
    broker.close()
    await (await shared?.catch(() => undefined))?.stop()
  }
}
