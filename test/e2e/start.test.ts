/**
 * `npm start`: the deploy bundle served by workerd through Miniflare, as a user runs it, with the
 * cron on its schedule (scripts/tools/start.mjs).
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { nextRun } from '../../scripts/tools/start.mjs'
import { freePort, ROOT } from '../../scripts/tools/launch.mjs'
import { get, post, SETOSA } from './support/http'
import { sharedBundle } from './support/servers'

const stops: (() => void)[] = []
afterAll(() => stops.forEach((stop) => stop()))

describe('npm start', () => {
  // The bundle is the one the run's other files serve (`--bundle`): building it is wrangler's part,
  // tested by every file that serves it; `npm start` builds with the same launcher function.
  it('serves a deploy bundle on the port asked for, and stops on SIGTERM', async () => {
    const port = await freePort()
    const { dir } = await sharedBundle()
    const child = spawn(
      process.execPath,
      [join(ROOT, 'scripts/tools/start.mjs'), '--port', String(port), '--bundle', dir],
      {
        cwd: ROOT,
        env: { ...process.env, PATH: `${join(ROOT, 'node_modules/.bin')}:${process.env.PATH}` },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    stops.push(() => child.kill('SIGKILL'))
    const deadline = Date.now() + 150_000
    // Up once it has said where it serves and when the cron fires next: two lines, printed one after
    // the other but read from the pipe in as many chunks as they come (the second was seen missing
    // when the test read the output as soon as the first had arrived).
    const up = /\[start\] cron \*\/5 \* \* \* \*: next at /
    while (!up.test(output)) {
      expect(Date.now(), `npm start did not come up:\n${output}`).toBeLessThan(deadline)
      expect(child.exitCode, output).toBeNull()
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(output).toContain(`[start] serving http://127.0.0.1:${port}`)
    const url = `http://127.0.0.1:${port}`
    expect((await get(`${url}/v2/health/live`)).status).toBe(200)
    const answer = await post<{ predictions: number[][] }>(`${url}/v1/models/iris:predict`, { instances: [SETOSA] })
    expect(answer.status).toBe(200)
    expect(answer.json.predictions[0]![0]).toBeGreaterThan(0.9)
    // Stopped, it leaves nothing listening. (The exit code is the `node` devDependency's launcher's,
    // which forwards the signal, so the port is what tells.)
    child.kill('SIGTERM')
    await exited
    await expect(fetch(`${url}/v2/health/live`, { signal: AbortSignal.timeout(10_000) })).rejects.toThrow()
  })

  it('reads cron schedules as Cloudflare does, to the minute', () => {
    const at = new Date(Date.UTC(2026, 10, 29, 1, 47, 30)) // a Sunday, in UTC as Cloudflare's crons are
    expect(nextRun('*/5 * * * *', at)).toEqual(new Date(Date.UTC(2026, 10, 29, 1, 50)))
    expect(nextRun('0 * * * *', at)).toEqual(new Date(Date.UTC(2026, 10, 29, 2, 0)))
    expect(nextRun('15 3 * * 1', at)).toEqual(new Date(Date.UTC(2026, 10, 30, 3, 15))) // Monday
    expect(nextRun('0 0 1 1 *', at)).toEqual(new Date(Date.UTC(2027, 0, 1, 0, 0)))
    expect(() => nextRun('* * *', at)).toThrow(/five fields/)
  })
})
