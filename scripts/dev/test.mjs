// `npm test`: the whole suite, on two cores at once. Vitest runs a config's projects one after another
// when they differ in how many files may run at once (the e2e files share servers: one at a time), so
// one `vitest run` keeps a core idle. Here two run side by side, each a *lane* of the config
// (vitest.config.ts, WARMSERVE_TEST_LANE): the workerd tests, then the Node tests; and the tests
// against `wrangler dev`. Each lane is a whole vitest run with its own summary; the run fails when
// either does. Arguments (a file, `--project e2e`, a reporter…) mean one `vitest run` with them, as
// before: `npm test -- test/v2.test.ts`.
import { spawn } from 'node:child_process'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const VITEST = join(ROOT, 'node_modules/vitest/vitest.mjs')
const args = process.argv.slice(2)

/** The lanes: a name for the last line, and the value of WARMSERVE_TEST_LANE (each line's prefix). */
const LANES = [
  { name: 'wrangler dev', lane: 'e2e' },
  { name: 'workerd and Node', lane: 'workers' },
]

/** Children still running, stopped with this process (Ctrl-C). */
const children = new Set()
/** Set by Ctrl-C (or a SIGTERM): the run then exits 130 whatever the lanes report as they stop. */
let interrupted = false
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    interrupted = true
    for (const child of children) child.kill(signal)
  })
}

function vitest(vitestArgs, env, stdio) {
  const child = spawn(process.execPath, [VITEST, 'run', ...vitestArgs], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio,
  })
  children.add(child)
  const done = new Promise((resolve) =>
    child.on('close', (code, signal) => {
      children.delete(child)
      resolve(code ?? (signal ? 1 : 0))
    }),
  )
  return { child, done }
}

if (args.length > 0) {
  const code = await vitest(args, {}, 'inherit').done
  process.exitCode = interrupted ? 130 : code
} else {
  const started = performance.now()
  // Both runs' output as it comes, a whole line at a time and prefixed with its lane, so that neither
  // cuts into the other's lines.
  const color = process.stdout.isTTY ? { FORCE_COLOR: '1' } : {}
  const runs = LANES.map(({ name, lane }) => {
    const run = vitest([], { ...color, WARMSERVE_TEST_LANE: lane }, ['ignore', 'pipe', 'pipe'])
    for (const [stream, out] of [
      [run.child.stdout, process.stdout],
      [run.child.stderr, process.stderr],
    ]) {
      let pending = ''
      stream.setEncoding('utf8')
      stream.on('data', (chunk) => {
        const lines = (pending + chunk).split('\n')
        pending = lines.pop()
        if (lines.length > 0) out.write(lines.map((line) => `[${lane}] ${line}\n`).join(''))
      })
      stream.on('end', () => pending && out.write(`[${lane}] ${pending}\n`))
    }
    return { name, lane, done: run.done }
  })
  const codes = await Promise.all(runs.map((run) => run.done))
  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  const failed = runs.filter((_, i) => codes[i] !== 0)
  console.log(
    failed.length === 0
      ? `\nnpm test: both lanes passed in ${seconds} s`
      : `\nnpm test: ${failed.map((run) => `the ${run.name} lane (${run.lane})`).join(' and ')} failed; ${seconds} s`,
  )
  process.exitCode = interrupted ? 130 : failed.length === 0 ? 0 : 1
}
