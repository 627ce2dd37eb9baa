// Where the local server listens: wrangler.toml's [dev] ip and port, which `npm run dev` (wrangler
// dev) and `npm start` both use, or the port given with --port. Scripts that print a URL to try
// print this one, so a hint matches the server that actually runs.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './launch.mjs'

/** wrangler dev's own defaults, for a wrangler.toml without a [dev] table. */
const WRANGLER_DEFAULTS = { ip: 'localhost', port: 8787 }

/** `[dev]` ip and port from the text of a wrangler.toml (keys of that table only, until the next table). */
export function devAddress(
  toml = existsSync(join(ROOT, 'wrangler.toml')) ? readFileSync(join(ROOT, 'wrangler.toml'), 'utf8') : '',
) {
  const table = /^\[dev\][ \t]*$([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(toml)?.[1] ?? ''
  const ip = /^[ \t]*ip[ \t]*=[ \t]*"([^"]+)"/m.exec(table)?.[1] ?? WRANGLER_DEFAULTS.ip
  const port = Number(/^[ \t]*port[ \t]*=[ \t]*(\d+)/m.exec(table)?.[1] ?? WRANGLER_DEFAULTS.port)
  return { ip, port }
}

/**
 * The base URL of the local server: `--port N` among `argv` wins over wrangler.toml's [dev] port,
 * as it does for `wrangler dev --port N` and `npm start -- --port N`.
 */
export function devUrl(argv = [], toml) {
  const { ip, port } = devAddress(toml)
  const i = argv.indexOf('--port')
  const chosen = i >= 0 ? Number(argv[i + 1]) : port
  if (!Number.isInteger(chosen) || chosen < 1 || chosen > 65535)
    throw new Error(`--port ${argv[i + 1]} is not a port number`)
  return `http://${ip}:${chosen}`
}
