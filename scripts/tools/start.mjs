#!/usr/bin/env node
// `npm start`: production-like local serving. The Worker as `wrangler deploy` would upload it (the
// [build] step, then `wrangler deploy --dry-run`), served by workerd through Miniflare on
// 127.0.0.1:8787 with wrangler.toml's bindings and the cron on its schedule — without wrangler dev's
// proxy (about 4–5 ms a request) or file watcher. Local state (the R2 bucket) is wrangler dev's, under
// .wrangler/state, so `npm run publish-model` writes where both read.
//
// Usage: npm start [-- --port N] [-- --var KEY:VALUE …] [-- --bundle DIR]   (N: wrangler.toml's [dev] port unless given)
// --bundle DIR serves a bundle built before (`npm run check:bundle` writes one to .wrangler/dry-run)
// instead of building one: a restart in a second.
import { join, resolve } from 'node:path'
import { readCommandLine, readOrExit } from './command-line.mjs'
import { devAddress } from './dev-address.mjs'
import { buildBundle, bundleAt, ROOT, startBundle } from './launch.mjs'

const USAGE = 'usage: npm start [-- --port N] [--var KEY:VALUE …] [--bundle DIR]'

/**
 * The command line, read: its options, or `problem`, what is wrong with it (an unknown option, a value
 * missing, a port that is not a number, a --var without its colon).
 */
function readArgs(args) {
  const read = readCommandLine(args, {
    port: { type: 'string' },
    var: { type: 'string', multiple: true },
    bundle: { type: 'string' },
  })
  if (read.problem !== undefined || read.help) return read
  const { port, bundle } = read.values
  if (port !== undefined && !/^[0-9]{1,5}$/.test(port)) return { problem: `--port ${port}: a port number` }
  const vars = read.values.var ?? []
  const bad = vars.find((v) => !/^[^:]+:/.test(v))
  if (bad !== undefined) return { problem: `--var ${bad}: KEY:VALUE` }
  return {
    port: Number(port ?? devAddress().port),
    bundle,
    vars: Object.fromEntries(vars.map((v) => v.split(/:(.*)/s).slice(0, 2))),
  }
}

/** When `cron` (five fields: minute hour day month weekday, in UTC as Cloudflare reads them) next fires after `from`. */
export function nextRun(cron, from = new Date()) {
  const fields = cron.trim().split(/\s+/)
  if (fields.length !== 5) throw new Error(`cron '${cron}' must have five fields`)
  const ranges = [
    [0, 59],
    [0, 23],
    [1, 31],
    [1, 12],
    [0, 6],
  ]
  const sets = fields.map((field, f) => {
    const [lo, hi] = ranges[f]
    const values = new Set()
    for (const part of field.split(',')) {
      const [range, stepText] = part.split('/')
      const step = stepText === undefined ? 1 : Number(stepText)
      const [a, b] =
        range === '*'
          ? [lo, hi]
          : range.includes('-')
            ? range.split('-').map(Number)
            : [Number(range), stepText ? hi : Number(range)]
      if (![a, b, step].every(Number.isInteger) || step < 1) throw new Error(`cron '${cron}': cannot read '${part}'`)
      for (let v = a; v <= b; v += step) values.add(v)
    }
    return values
  })
  const t = new Date(from)
  t.setUTCSeconds(0, 0)
  for (let i = 0; i < 366 * 24 * 60; i++) {
    t.setUTCMinutes(t.getUTCMinutes() + 1)
    const parts = [t.getUTCMinutes(), t.getUTCHours(), t.getUTCDate(), t.getUTCMonth() + 1, t.getUTCDay()]
    if (parts.every((v, f) => sets[f].has(v))) return t
  }
  throw new Error(`cron '${cron}' never fires`)
}

async function main({ port, bundle: prebuilt, vars }) {
  if (prebuilt === undefined) console.log('[start] building the deploy bundle (wrangler deploy --dry-run) …')
  const bundle =
    prebuilt !== undefined
      ? bundleAt(resolve(prebuilt))
      : await buildBundle({ outDir: join(ROOT, '.wrangler', 'start') })
  const server = await startBundle({
    bundle,
    port,
    persistDir: join(ROOT, '.wrangler', 'state', 'v3'),
    vars,
    ready: 'listening',
  })
  const shutdown = async () => {
    clearInterval(follow)
    for (const timer of timers) clearTimeout(timer)
    await server.stop()
    process.exit(0)
  }
  process.once('SIGINT', shutdown)
  process.once('SIGTERM', shutdown)
  console.log(`[start] serving ${server.url} (workerd through Miniflare, the deploy bundle; Ctrl-C stops)`)
  // The Worker's own log lines, as they come.
  let shown = 0
  const follow = setInterval(() => {
    const text = server.logs()
    if (text.length > shown) process.stdout.write(text.slice(shown))
    shown = text.length
  }, 250)
  // The cron on its schedule, as Cloudflare fires it.
  const timers = []
  for (const cron of server.crons) {
    const arm = () => {
      const at = nextRun(cron)
      timers.push(
        setTimeout(async () => {
          console.log(
            `[start] cron ${cron}: ${await server.scheduled(cron).catch((error) => `failed: ${error.message}`)}`,
          )
          arm()
        }, at.getTime() - Date.now()),
      )
    }
    arm()
    console.log(`[start] cron ${cron}: next at ${nextRun(cron).toISOString()}`)
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(readOrExit(readArgs(process.argv.slice(2)), 'start', USAGE)).catch((error) => {
    console.error(`[start] ${error.message}`)
    process.exit(1)
  })
}
