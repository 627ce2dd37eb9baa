/**
 * Starts `wrangler dev` as a user runs it (`npm run dev`): a real workerd behind wrangler's
 * [build] command, on a free port of 127.0.0.1, for end-to-end tests over real HTTP.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root. */
export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
const BIN = join(ROOT, 'node_modules', '.bin')

export interface DevServerOptions {
  /** The model repository to serve (`--assets`); also handed to scripts/build-index.mjs as MODEL_ASSETS_DIR. */
  assetsDir?: string
  /** `[vars]` overrides, passed as `--var KEY:VALUE`. */
  vars?: Record<string, string>
  /** How long to wait for `GET /v2/health/live` to answer 200. */
  readyTimeoutMs?: number
}

export interface DevServer {
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  url: string
  /** Ends wrangler and its workerd processes (the whole process group) and waits for them to go. */
  stop(): Promise<void>
  /** Everything wrangler printed so far, stdout and stderr interleaved. */
  logs(): string
}

/** A port that was free a moment ago: the OS picks one for a listener on port 0. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => (port > 0 ? resolvePort(port) : reject(new Error('could not find a free port'))))
    })
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** True while any process of the group still exists. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal)
  } catch {
    // The group is already gone.
  }
}

/** The environment a user's shell would give `npm run dev`, without what the test runner adds. */
function childEnv(assetsDir: string | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const key of Object.keys(env)) {
    if (key.startsWith('VITEST') || key === 'TEST' || key === 'NODE_ENV' || key === 'MODEL_ASSETS_DIR') delete env[key]
  }
  return {
    ...env,
    // npm scripts put node_modules/.bin first, so wrangler runs on the Node 22 that the project brings.
    PATH: `${BIN}${delimiter}${env.PATH ?? ''}`,
    CI: 'true',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
    WRANGLER_SEND_METRICS: 'false',
    // Miniflare would fetch Request.cf from the Internet; there is none here.
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    ...(assetsDir !== undefined && { MODEL_ASSETS_DIR: assetsDir }),
  }
}

/**
 * Spawns `wrangler dev` on 127.0.0.1 and resolves once `GET /v2/health/live` answers 200.
 * Rejects, with wrangler's output, if it exits early or is not live within `readyTimeoutMs`.
 */
export async function startDevServer(options: DevServerOptions = {}): Promise<DevServer> {
  const { assetsDir, vars = {}, readyTimeoutMs = 90_000 } = options
  const port = await freePort()
  const inspectorPort = await freePort()
  const persistDir = mkdtempSync(join(tmpdir(), 'warmserve-e2e-state-'))
  const args = [
    'dev',
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--inspector-ip', '127.0.0.1',
    '--inspector-port', String(inspectorPort),
    '--show-interactive-dev-session=false',
    '--persist-to', persistDir,
    ...(assetsDir !== undefined ? ['--assets', assetsDir] : []),
    ...Object.entries(vars).flatMap(([key, value]) => ['--var', `${key}:${value}`]),
  ]

  const chunks: string[] = [`$ wrangler ${args.join(' ')}\n`]
  let logBytes = 0
  const record = (chunk: Buffer) => {
    // Keep the output bounded: a noisy run must not eat the test process's memory.
    if (logBytes > 4 * 1024 * 1024) return
    logBytes += chunk.byteLength
    chunks.push(chunk.toString('utf8'))
  }
  const logs = () => chunks.join('')

  const child = spawn(join(BIN, 'wrangler'), args, {
    cwd: ROOT,
    env: childEnv(assetsDir),
    // Its own process group, so stop() can end workerd too, which wrangler starts as its children.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout!.on('data', record)
  child.stderr!.on('data', record)
  let exitInfo: string | undefined
  const exited = new Promise<void>((resolveExit) => {
    child.once('exit', (code, signal) => {
      exitInfo = `exited with ${signal ?? `code ${code}`}`
      resolveExit()
    })
    child.once('error', (error) => {
      exitInfo = `failed to start: ${error.message}`
      resolveExit()
    })
  })
  const pgid = child.pid
  // If the test process dies without stop(), do not leave wrangler and workerd behind.
  const onExit = () => pgid !== undefined && killGroup(pgid, 'SIGKILL')
  process.once('exit', onExit)

  let stopped: Promise<void> | undefined
  const stop = () =>
    (stopped ??= (async () => {
      if (pgid !== undefined) {
        killGroup(pgid, 'SIGTERM')
        const deadline = Date.now() + 10_000
        while (groupAlive(pgid) && Date.now() < deadline) await sleep(100)
        if (groupAlive(pgid)) {
          killGroup(pgid, 'SIGKILL')
          const hardDeadline = Date.now() + 5_000
          while (groupAlive(pgid) && Date.now() < hardDeadline) await sleep(100)
        }
      }
      await Promise.race([exited, sleep(5_000)])
      process.removeListener('exit', onExit)
      rmSync(persistDir, { recursive: true, force: true })
    })())

  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + readyTimeoutMs
  let lastProblem = 'no answer yet'
  for (;;) {
    if (exitInfo !== undefined) {
      await stop()
      throw new Error(`wrangler dev ${exitInfo} before it was live.\n--- wrangler output ---\n${logs()}`)
    }
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`wrangler dev was not live at ${url} within ${readyTimeoutMs} ms (${lastProblem}).\n--- wrangler output ---\n${logs()}`)
    }
    try {
      const response = await fetch(`${url}/v2/health/live`, { signal: AbortSignal.timeout(2_000) })
      await response.arrayBuffer()
      if (response.status === 200) break
      lastProblem = `GET /v2/health/live answered ${response.status}`
    } catch (error) {
      lastProblem = `GET /v2/health/live: ${(error as Error).message}`
    }
    await sleep(250)
  }
  return { url, stop, logs }
}
