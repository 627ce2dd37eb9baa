/**
 * The typed client's three checks (test/node/client-types.test.ts) take about 16 CPU-s: a TypeScript
 * program over src/ to regenerate client/index.d.ts, and a strict compile of a separate project against
 * it with each hono a user may have. They start here, when the run starts, as child processes in the
 * background (BACKGROUND below): they take only what CPU the tests leave idle, instead of slowing the
 * tests' start (in `npm test` both cores are busy from the first second). Their test brings them to the
 * usual priority when it waits for them (`pids.json`), so they never starve. Each writes `<name>.json`
 * (exit code and output) into the directory handed to the tests as `clientChecks`, where the test waits for it.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { writeWhole } from '../../../scripts/build/files.mjs'
import { ROOT, setGroupPriorityPatiently } from '../../../scripts/tools/launch.mjs'
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
 * In the background where that can be undone: on Linux with autogroup scheduling, each check in a session
 * of its own (so a scheduling group of its own) at group nice 19, which any process may raise back to 0
 * (a process's own nice value can be lowered by a user only with a privilege). The scheduler shares the
 * CPU between groups before it looks at a process's own nice value, so this is also what ranks the checks
 * below vitest and each `wrangler dev` (their own sessions too). Elsewhere (no autogroup, Windows) they run
 * at the usual priority from the start.
 */
const BACKGROUND = 19

function autogroupEnabled(): boolean {
  try {
    return readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'utf8').trim() === '1'
  } catch {
    return false
  }
}

export default function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'client-checks-'))
  const running = new Set<ChildProcess>()
  let round = 0
  const background = autogroupEnabled()
  const start = () => {
    const out = join(dir, String(++round))
    mkdirSync(out)
    const lowered: Promise<[string, number] | undefined>[] = []
    for (const [name, args] of Object.entries(checks(out))) {
      const child = spawn(process.execPath, args, {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      })
      // Only in the background where the test can raise it again (test/node/client-types.test.ts).
      const pid = child.pid
      if (background && pid !== undefined)
        lowered.push(setGroupPriorityPatiently(pid, BACKGROUND).then((done) => (done ? [name, pid] : undefined)))
      running.add(child)
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk))
      const done = (code: number | null, error?: Error) => {
        // 'error' and then 'close'; or a check killed at teardown, whose directory is gone.
        if (!running.delete(child) || stopped) return
        writeWhole(join(out, `${name}.json`), JSON.stringify({ code, output: error ? String(error) : output }))
      }
      child.once('error', (error) => done(null, error))
      child.once('close', (code) => done(code))
    }
    // The checks the test must bring back to the usual priority when it waits for them (none where
    // they run at the usual priority), written once they are in the background, whole.
    void Promise.all(lowered).then((pids) => {
      if (stopped) return
      writeWhole(join(out, 'pids.json'), JSON.stringify(Object.fromEntries(pids.filter((p) => p !== undefined))))
    })
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
