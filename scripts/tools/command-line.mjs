// The user tools' command lines (add-model, reshard, npm start): Node's parseArgs, with --help, and what is
// wrong said in words rather than with a stack trace.
import { parseArgs } from 'node:util'

/**
 * `args` read by parseArgs with `options` and `--help`/`-h`: `{ help: true }` when asked, `{ problem }`
 * (parseArgs's message: an unknown option, a value missing) when they cannot be read, else parseArgs's
 * `{ values, positionals }`.
 */
export function readCommandLine(args, options, { allowPositionals = false } = {}) {
  let parsed
  try {
    parsed = parseArgs({ args, allowPositionals, options: { ...options, help: { type: 'boolean', short: 'h' } } })
  } catch (error) {
    return { problem: error.message }
  }
  return parsed.values.help ? { help: true } : parsed
}

/**
 * For a tool run as a process, what `readCommandLine` (or a tool's checks on top of it) read: the usage
 * printed and the process ended for `--help` (0) or a `problem` (2, what was wrong first), else `read` as is.
 */
export function readOrExit(read, tool, usage) {
  if (read.problem !== undefined) {
    console.error(`[${tool}] ${read.problem}\n${usage}`)
    process.exit(2)
  }
  if (read.help) {
    console.log(usage)
    process.exit(0)
  }
  return read
}
