/**
 * The typed client's two checks (test/node/client-types.test.ts) take about 12 s of a core: a
 * TypeScript program over src/ to regenerate client/index.d.ts, and a strict compile of a separate
 * project against it. They start here, when the run starts, as child processes (at the lowest CPU
 * priority where a core is idle, see LOWEST_PRIORITY): they run beside the workerd and `wrangler dev`
 * tests instead of adding their time to the end of the run. Each writes `<name>.json` (exit code and output) into the directory
 * handed to the tests as `clientChecks`, where the test waits for it.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { ROOT, setGroupPriority } from '../../../scripts/tools/launch.mjs'
import { CLIENT_MAIN, CLIENT_OPTIONS } from './client-project'

/** The checks: a name, and the command that passes (exit code 0, no output) when the check does. */
const checks = (dir: string): Record<string, string[]> => ({
  fresh: [join(ROOT, 'scripts/dev/build-client.mjs'), '--check'],
  ...Object.fromEntries(
    Object.entries(HONO_COPIES).map(([name, hono]) => [
      name,
      [TSC, '-p', join(clientProject(dir, name, hono), 'tsconfig.json')],
    ]),
  ),
})

const TSC = join(ROOT, 'node_modules/typescript/bin/tsc')

/**
 * The hono versions a user may have installed: the one warmserve pins, and the newest in its
 * peerDependencies range, installed beside it under an alias (`hono-latest`, package.json). Raise
 * the alias when hono publishes a newer 4.x: `npm install --save-exact --save-dev hono-latest@npm:hono@4.x.y`.
 */
const HONO_COPIES: Record<string, string> = {
  compile: join(ROOT, 'node_modules/hono'),
  'compile-latest': join(ROOT, 'node_modules/hono-latest'),
}

/**
 * A project that depends on warmserve and on the given hono, with the README's calls. warmserve is
 * there as npm installs a package (a copy, with no node_modules of its own), so its types resolve
 * `hono` to the project's copy — the one the project's `hono/client` is — as they do for a user.
 */
function clientProject(dir: string, name: string, hono: string): string {
  const project = join(dir, name)
  mkdirSync(join(project, 'node_modules/warmserve/client'), { recursive: true })
  copyFileSync(join(ROOT, 'package.json'), join(project, 'node_modules/warmserve/package.json'))
  copyFileSync(join(ROOT, 'client/index.d.ts'), join(project, 'node_modules/warmserve/client/index.d.ts'))
  symlinkSync(hono, join(project, 'node_modules/hono'))
  writeFileSync(join(project, 'package.json'), JSON.stringify({ type: 'module', private: true }))
  writeFileSync(join(project, 'main.ts'), CLIENT_MAIN)
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: CLIENT_OPTIONS, include: ['main.ts'] }),
  )
  return project
}

/**
 * At the lowest priority in one run of every project, which leaves a core idle for them. In `npm test`'s
 * workers lane (scripts/dev/test.mjs) the e2e lane keeps the other core busy to the end, and the checks
 * at the lowest priority were seen to get no result within the test's deadline: there they take their
 * turn like the rest.
 */
const LOWEST_PRIORITY = process.env.WARMSERVE_TEST_LANE === undefined

export default function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'client-checks-'))
  const running = new Set<ChildProcess>()
  let round = 0
  const start = () => {
    const out = join(dir, String(++round))
    mkdirSync(out)
    for (const [name, args] of Object.entries(checks(out))) {
      // A session of its own, so a Linux kernel with autogroup scheduling puts it in a group of its own,
      // and that group at the lowest priority too: nice alone only ranks it within vitest's group,
      // while each `wrangler dev` (a session of its own as well) competes group against group.
      // (Windows has no nice: there the checks run at the usual priority.)
      const nice = LOWEST_PRIORITY && process.platform !== 'win32'
      const command = nice ? ['nice', '-n', '19', process.execPath, ...args] : [process.execPath, ...args]
      const child = spawn(command[0]!, command.slice(1), {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      })
      if (nice && child.pid !== undefined) setGroupPriority(child.pid, 19)
      running.add(child)
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk))
      const done = (code: number | null, error?: Error) => {
        // 'error' and then 'close'; or a check killed at teardown, whose directory is gone.
        if (!running.delete(child) || stopped) return
        // Written whole, then renamed: the test never reads half a result.
        writeFileSync(join(out, `${name}.tmp`), JSON.stringify({ code, output: error ? String(error) : output }))
        renameSync(join(out, `${name}.tmp`), join(out, `${name}.json`))
      }
      child.once('error', (error) => done(null, error))
      child.once('close', (code) => done(code))
    }
    project.provide('clientChecks', out)
  }
  start()
  // In watch mode each rerun checks the files as they are now.
  project.onTestsRerun(start)
  let stopped = false
  return () => {
    stopped = true
    for (const child of running) child.kill()
    rmSync(dir, { recursive: true, force: true })
  }
}
