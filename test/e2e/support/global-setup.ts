/**
 * Starts the servers the e2e files share (test/e2e/support/servers.ts) — the one `wrangler dev`, serving
 * model-assets/ as `npm run dev` does, and the deploy bundle serving the fixture repository
 * (test/e2e/support/fixture-repo.ts) behind the service-binding tests' caller Worker through Miniflare
 * (test/e2e/support/fixture-server.ts) — builds the one deploy bundle those and the files that serve it
 * themselves share, launches the one Chromium the page tests share, assembles the zoo's
 * repository (test/e2e/support/zoo-repo.ts), and stops and removes them all after the run. At once in
 * a run of every file; otherwise lazily, on first request, so a run of files that do not need them
 * does not pay for them. A small HTTP endpoint on 127.0.0.1 hands them
 * out: `/`, `/fixtures` and `/own/<file>` (a file's own server, OWN_SERVERS) a server's URL, port and process group, `/bundle` the bundle, `/chromium`
 * the browser's WebSocket endpoint, `/zoo` the zoo repository's folder, as JSON.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserServer } from 'playwright-core'
import type { TestProject } from 'vitest/node'
import {
  buildBundle,
  checkedBundle,
  processGroups,
  setGroupPriority,
  startWranglerDev,
} from '../../../scripts/tools/launch.mjs'
import type { Bundle, BundleServer, Launched, WranglerDev } from '../../../scripts/tools/launch.mjs'
import { chromiumAvailable, launchChromium } from './chromium'
import { writeFixtureRepository } from './fixture-repo'
import { startFixtureServer } from './fixture-server'
import { writeLeakRepository } from './models'
import { writeZooRepository } from './zoo-repo'

/** The admin token of the shared `wrangler dev`; the admin API is off without one. */
export const SHARED_ADMIN_TOKEN = 'e2e-shared-admin-token'
/** The shared server's configuration: wrangler.toml as is, plus the admin token. */
const SHARED_VARS = { ADMIN_TOKEN: SHARED_ADMIN_TOKEN }

/**
 * What a test file needs of a shared server: where it listens, and for its memory the process group of
 * a `wrangler dev` (a bundle served through Miniflare has none: its one workerd is found by its port).
 */
const described = (server: WranglerDev | BundleServer) =>
  JSON.stringify({ url: server.url, port: server.port, ...('pgid' in server && { pgid: server.pgid }) })

/**
 * The servers of one file each, a configuration no other file shares (`/own/<file>`): started here
 * like the shared ones, so that in a run of every file their start overlaps the workers project
 * instead of opening their file. Each file still has its server to itself: a workerd of its own, with
 * its own repository and vars, serving the run's one deploy bundle (`bundle()`).
 */
const OWN_SERVERS: Record<string, (bundle: () => Promise<Bundle>) => Promise<{ server: BundleServer; dir: string }>> = {
  // The two detectors need most of the wasm heap: they are served apart from the shared fixture server.
  detect: (bundle) =>
    startFixtureServer(async (repo) => (await import('./detect-models')).writeDetectRepository(repo), { bundle }),
  // On a server with a slot leak the models would answer 429 for good: apart, and with limits of its own.
  'vanishing-clients': (bundle) =>
    startFixtureServer(async (repo) => writeLeakRepository(repo), {
      bundle,
      vars: { MAX_CONCURRENT: '3', MAX_QUEUE: '3' },
    }),
}

/**
 * The priority of the servers started at once in a run of every file, until the first e2e file asks
 * for one: below the workers project, which runs meanwhile and is what the run waits for, and above
 * the typed client's checks (test/node/support/global-setup.ts, 19).
 */
const BACKGROUND_NICE = 10

export default async function setup(project: TestProject) {
  // A run of every file needs them all: started now, one after another, they come up while the
  // workers project runs instead of after it (in `npm test`'s e2e lane, while its first files run). A
  // run of chosen files starts only what they ask for.
  const chosen = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern
  const eager = !chosen?.length
  let nice = eager ? BACKGROUND_NICE : undefined
  const builds = new Set<number>()
  /** Once the e2e files run, what they wait for runs at the usual priority (where this may lower it). */
  const foreground = () => {
    if (nice === undefined) return
    nice = undefined
    for (const pid of [...processGroups(), ...builds]) setGroupPriority(pid, 0)
  }
  let shared: Promise<WranglerDev> | undefined
  let fixtures: Promise<{ server: BundleServer; dir: string }> | undefined
  let bundle: Promise<Bundle> | undefined
  let browser: Promise<BrowserServer> | undefined
  let zoo: Promise<string> | undefined
  const sharedBundle = () => {
    // The bundle `npm run check:bundle` wrote, when no file it was made from changed since (.ci/run builds
    // it just before `npm test`): the same bundle, without building it again.
    const checked = bundle ? undefined : checkedBundle()
    if (checked) bundle = Promise.resolve(checked)
    if (!bundle) {
      const built = buildBundle({ nice, onSpawn: (pid) => builds.add(pid) }).finally(() => builds.clear())
      bundle = built
      // Built in the background (at BACKGROUND_NICE) on a busy machine, it can pass the launcher's
      // deadline: then the first file that asks builds it again, at the usual priority.
      if (nice !== undefined) built.catch(() => bundle === built && (bundle = undefined))
    }
    return bundle
  }
  const own = new Map<string, Promise<{ server: BundleServer; dir: string }>>()
  const ownServer = (name: string) => () => {
    if (!own.has(name)) {
      const started = OWN_SERVERS[name]!(sharedBundle)
      own.set(name, started)
      // Started in the background on a busy machine (its bundle built at BACKGROUND_NICE), it can pass
      // a deadline: then its file, when it asks, starts it again.
      if (nice !== undefined) started.catch(() => own.get(name) === started && own.delete(name))
    }
    return own.get(name)!.then(({ server }) => described(server))
  }
  const zooDir = mkdtempSync(join(tmpdir(), 'warmserve-e2e-zoo-'))
  const resources: Record<string, () => Promise<string>> = {
    // detect.test.ts is the longest file, so the first.
    '/own/detect': ownServer('detect'),
    // The fixture server also answers the service-binding tests: its caller Worker is in front (fixture-server.ts).
    '/fixtures': () =>
      (fixtures ??= startFixtureServer(writeFixtureRepository, { bundle: sharedBundle })).then(({ server }) =>
        described(server),
      ),
    '/bundle': () => sharedBundle().then((b) => JSON.stringify(b)),
    '/': () => (shared ??= startWranglerDev({ vars: SHARED_VARS, nice })).then(described),
    ...(chromiumAvailable && {
      '/chromium': () => (browser ??= launchChromium()).then((server) => JSON.stringify(server.wsEndpoint())),
    }),
    '/own/vanishing-clients': ownServer('vanishing-clients'),
    '/zoo': () => (zoo ??= writeZooRepository(zooDir)).then((models) => JSON.stringify(models)),
  }
  const broker = createServer((request, response) => {
    foreground()
    const resource = resources[request.url ?? '']
    if (!resource) return void response.writeHead(404, { 'content-type': 'text/plain' }).end(`no ${request.url} here`)
    resource().then(
      (text) => response.writeHead(200, { 'content-type': 'application/json' }).end(text),
      (error: Error) => response.writeHead(500, { 'content-type': 'text/plain' }).end(error.message),
    )
  })
  if (eager) {
    // In the order a first run's files ask for them (vitest runs the largest files first).
    const { '/zoo': zooRepository, ...servers } = resources
    void Object.values(servers)
      .reduce<Promise<unknown>>((previous, start) => previous.then(start, start), Promise.resolve())
      .catch(() => {})
    // Beside them, not after: its measuring runs in child processes of its own, one model at a time.
    void zooRepository!().catch(() => {})
  }
  await new Promise<void>((resolve, reject) => {
    broker.once('error', reject)
    broker.listen(0, '127.0.0.1', resolve)
  })
  project.provide('e2eServers', `http://127.0.0.1:${(broker.address() as AddressInfo).port}`)
  return async () => {
    broker.close()
    const stopped = async (started: Promise<{ server: Launched; dir?: string }> | undefined) => {
      const running = await started?.catch(() => undefined)
      await running?.server.stop()
      if (running?.dir) rmSync(running.dir, { recursive: true, force: true })
    }
    await Promise.all([
      stopped(shared?.then((server) => ({ server }))),
      stopped(fixtures),
      ...[...own.values()].map(stopped),
      browser?.then((server) => server.close()).catch(() => {}),
      zoo?.catch(() => {}),
    ])
    rmSync(zooDir, { recursive: true, force: true })
  }
}
