/**
 * Starts, on first request, the one `wrangler dev` the e2e files share (test/e2e/servers.ts), and
 * stops it after the run. Lazily, so a run of files that do not need it does not pay for it: a
 * small HTTP endpoint on 127.0.0.1 starts it when first asked and answers with its URL.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestProject } from 'vitest/node'
import { startWranglerDev } from '../../scripts/launch.mjs'
import type { WranglerDev } from '../../scripts/launch.mjs'

/** The admin token of the shared `wrangler dev`; the admin API is off without one. */
export const SHARED_ADMIN_TOKEN = 'e2e-shared-admin-token'
/** The shared server's configuration: wrangler.toml as is, plus the admin token. */
const SHARED_VARS = { ADMIN_TOKEN: SHARED_ADMIN_TOKEN }

export default async function setup(project: TestProject) {
  let shared: Promise<WranglerDev> | undefined
  const broker = createServer((_request, response) => {
    shared ??= startWranglerDev({ vars: SHARED_VARS })
    shared.then(
      (server) => response.writeHead(200, { 'content-type': 'text/plain' }).end(server.url),
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
