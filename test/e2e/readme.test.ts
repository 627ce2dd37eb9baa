/**
 * The README's examples run as written. Every `curl` command in a fenced ```sh block of README.md and
 * docs/*.md is read from the text itself; each one that calls the local server's models (the quick
 * start, the TF Serving, Open Inference Protocol and image examples) runs in bash, from the repository
 * root, against the shared `wrangler dev` that serves model-assets/ as `npm run dev` does — the only
 * change is the port. Commands with a `<placeholder>` are templates: the files they name must exist,
 * but they are not run; nor are calls by version label (see isTemplate).
 */
import { execFile } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import { devAddress } from '../../scripts/tools/dev-address.mjs'
import { ROOT, sharedDevServer } from './support/servers'

const run = promisify(execFile)

interface Example {
  /** Where it is: the file and the line its command starts on. */
  where: string
  /** The command as written, continuation lines joined. */
  command: string
}

/** The pages whose examples are read. */
const PAGES = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
]

/** Whether a shell command goes on to the next line: a quote left open, or a backslash at the end. */
function continues(command: string): boolean {
  let quote: string | undefined
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!
    if (quote === "'") {
      if (c === "'") quote = undefined
    } else if (c === '\\') {
      if (i === command.length - 1) return true
      i++
    } else if (quote === '"') {
      if (c === '"') quote = undefined
    } else if (c === "'" || c === '"') quote = c
    else if (c === '#' && /\s/.test(command[i - 1] ?? ' ')) break // a comment, to the end of the line
  }
  return quote !== undefined
}

/** Each `curl` command of each ```sh block (comments and other commands left out). */
function curlCommands(page: string): Example[] {
  const text = readFileSync(join(ROOT, page), 'utf8')
  const examples: Example[] = []
  for (const block of text.matchAll(/^```sh\n([\s\S]*?)^```/gm)) {
    const firstLine = text.slice(0, block.index).split('\n').length + 1
    const lines = block[1]!.split('\n')
    for (let i = 0; i < lines.length; i++) {
      if (!/^curl\s/.test(lines[i]!)) continue
      const start = i
      let command = lines[i]!
      while (continues(command) && i + 1 < lines.length) command = `${command}\n${lines[++i]}`
      examples.push({ where: `${page}:${firstLine + start}`, command })
    }
  }
  return examples
}

const examples = PAGES.flatMap(curlCommands)
const { port: DEV_PORT } = devAddress()
/** The local server as the README addresses it (wrangler.toml's [dev] port). */
const LOCAL = new RegExp(`\\b(localhost|127\\.0\\.0\\.1):${DEV_PORT}\\b`, 'g')
/** A call to a model of the local server: what a newcomer tries first. */
const isModelCall = (command: string) =>
  new RegExp(`(localhost|127\\.0\\.0\\.1):${DEV_PORT}/v[12]/models/`).test(command)
/**
 * A template (a `<placeholder>`), or a call by version label: the bundled models have no labels, so
 * those examples (docs/hot-updates.md) need a published version first.
 */
const isTemplate = (command: string) => /<[\w-]+>/.test(command) || /\/models\/[^/\s]+\/labels\//.test(command)
/** The files a command reads: curl's `@file` and `base64 file`. */
const filesOf = (command: string) =>
  [...command.matchAll(/(?:^|\s)['"]?@([\w./-]+)|\bbase64(?:\s+-\w+)*\s+([\w./-]+)/g)].map((m) => (m[1] ?? m[2])!)

describe("the README's examples", () => {
  let base = ''
  beforeAll(async () => {
    base = new URL((await sharedDevServer()).url).host
  })

  it('are found in the text: the quick start and the image examples among them', () => {
    const runnable = examples.filter((e) => isModelCall(e.command) && !isTemplate(e.command))
    expect(runnable.some((e) => e.where.startsWith('README.md') && e.command.includes('iris:predict'))).toBe(true)
    expect(runnable.filter((e) => e.command.includes('examples/digit.png')).length).toBeGreaterThanOrEqual(3)
  })

  it('name only files that are in the repository', () => {
    const named = examples.flatMap((e) => filesOf(e.command).map((file) => ({ where: e.where, file })))
    expect(named.length).toBeGreaterThan(0)
    expect(named.filter(({ file }) => !existsSync(join(ROOT, file)))).toEqual([])
  })

  it.each(examples.filter((e) => isModelCall(e.command) && !isTemplate(e.command)).map((e) => [e.where, e] as const))(
    '%s runs as written and answers 2xx',
    async (_where, { command }) => {
      // The status goes to stderr, so a pipe after curl (| grep …) sees the output as written.
      const text = command.replace(LOCAL, base).replace(/^curl /, `curl -w '%{stderr}%{http_code}\\n' `)
      // --norc: bash reads ~/.bashrc when its stdin is a socket, as Node's pipes are, taking it for a remote
      // shell (a pyenv init there took 0.1 CPU-s an example); the example needs none of it.
      const { stdout, stderr } = await run('bash', ['--norc', '-o', 'pipefail', '-c', text], { cwd: ROOT })
      expect(
        stderr
          .trim()
          .split('\n')
          .map(Number)
          .filter((status) => !(status >= 200 && status < 300)),
        `${command}\n${stdout}`,
      ).toEqual([])
      expect(stdout.trim()).not.toBe('')
      if (command.includes('examples/digit.png') && /digits:classify'?\s*$/m.test(command.split('\n')[0]!)) {
        // The sample is a held-out 7, and the README's comments say the model reads it so.
        expect((JSON.parse(stdout) as Array<{ label: string }>)[0]!.label).toBe('7')
      }
    },
  )
})
