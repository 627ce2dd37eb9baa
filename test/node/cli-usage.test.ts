/**
 * The user tools' command lines: `--help` prints the usage, and a wrong option says what was wrong and
 * the usage, exit code 2, never a Node stack trace nor a server started anyway (`npm start`, `npm run
 * reshard`; add-model's own are in add-model.test.ts).
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT } from '../../scripts/tools/launch.mjs'

const run = (script: string, ...args: string[]) =>
  spawnSync(process.execPath, [join(ROOT, 'scripts/tools', script), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 30_000,
  })

describe.each([
  ['start.mjs', /^usage: npm start \[-- --port N\] \[--var KEY:VALUE …\] \[--bundle DIR\]\n$/],
  ['reshard.mjs', /^usage: npm run reshard -- <model version folder> \[--max-shard-mb 4\]\n$/],
])('%s', (script, usage) => {
  it('prints its usage for --help, exit 0', () => {
    const help = run(script, '--help')
    expect([help.status, help.stderr]).toEqual([0, ''])
    expect(help.stdout).toMatch(usage)
  })

  it('says what was wrong and its usage for an unknown option, exit 2, before doing anything', () => {
    const wrong = run(script, '--prot', '8787')
    expect(wrong.status).toBe(2)
    expect(wrong.stdout).toBe('')
    expect(wrong.stderr).toMatch(/^\[(start|reshard)\] Unknown option '--prot'.*\nusage: /s)
    expect(wrong.stderr).not.toMatch(/\n\s+at /)
  })
})

it('npm start refuses a port that is not a number and a --var without its colon', () => {
  for (const [args, problem] of [
    [['--port', 'abc'], '--port abc: a port number'],
    [['--var', 'ADMIN_TOKEN'], '--var ADMIN_TOKEN: KEY:VALUE'],
    [['--port'], "Option '--port <value>' argument missing"],
  ] as const) {
    const wrong = run('start.mjs', ...args)
    expect([wrong.status, wrong.stdout], args.join(' ')).toEqual([2, ''])
    expect(wrong.stderr, args.join(' ')).toBe(
      `[start] ${problem}\nusage: npm start [-- --port N] [--var KEY:VALUE …] [--bundle DIR]\n`,
    )
  }
})
