/**
 * The typed client from another project: client/index.d.ts is up to date with the routes, and a
 * separate TypeScript project — strict, no skipLibCheck, no Cloudflare types — compiles against it
 * with real types (a wrong one is an error, so the types have not decayed to `any`).
 */
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { CLIENT_TYPES, clientTypes } from '../../scripts/build-client.mjs'

const ROOT = resolve(import.meta.dirname, '../..')
let project: string

// The README's calls, plus lines that must not compile.
const MAIN = `import { hc } from 'hono/client'
import type { WarmserveApp } from 'warmserve/client'

const api = hc<WarmserveApp>('http://127.0.0.1:8787')

const meta = await (await api.v2.models[':name'].$get({ param: { name: 'iris' } })).json()
const inputs: { name: string; shape: number[] }[] = meta.inputs
const res = await api.v2.models[':name'].infer.$post(
  { param: { name: 'iris' } },
  { init: { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'features', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }] }) } },
)
const cache: string | null = res.headers.get('x-model-cache')
const pred = await api.v1.models[':target'].$post({ param: { target: 'iris:predict' } }, { init: { body: JSON.stringify({ instances: [[5.1, 3.5, 1.4, 0.2]] }) } })
const live = await (await api.v2.health.live.$get()).json()
const yes: true = live.live

// @ts-expect-error: live is true, not a number
const wrong: number = live.live
// @ts-expect-error: no such route
api.v2.nosuch.$get()
// @ts-expect-error: the path parameter is required
api.v2.models[':name'].$get({})

export { inputs, cache, pred, yes, wrong }
`

beforeAll(() => {
  project = mkdtempSync(join(tmpdir(), 'client-project-'))
  mkdirSync(join(project, 'node_modules'))
  // What an install of warmserve (as a file: or git dependency) and hono gives the project.
  symlinkSync(ROOT, join(project, 'node_modules/warmserve'))
  symlinkSync(join(ROOT, 'node_modules/hono'), join(project, 'node_modules/hono'))
  writeFileSync(join(project, 'package.json'), JSON.stringify({ type: 'module', private: true }))
  writeFileSync(join(project, 'main.ts'), MAIN)
})
afterAll(() => rmSync(project, { recursive: true, force: true }))

describe('the typed client', () => {
  // Concurrently: each takes seconds of a core. The compile (a child process) starts first, then the
  // freshness check runs here meanwhile. nodenext is the strictest resolution an ESM project uses
  // (package exports, explicit extensions); a bundler's resolution accepts whatever it accepts.
  it.concurrent('compiles in a separate strict project (moduleResolution nodenext)', async () => {
    const options = {
      target: 'es2022',
      module: 'nodenext',
      moduleResolution: 'nodenext',
      strict: true,
      // The client's types and hono's are checked; TypeScript's own lib files need not be.
      skipLibCheck: false,
      skipDefaultLibCheck: true,
      noEmit: true,
      types: [],
      lib: ['es2022', 'dom'],
    }
    const config = join(project, 'tsconfig.json')
    writeFileSync(config, JSON.stringify({ compilerOptions: options, include: ['main.ts'] }))
    let output = ''
    try {
      await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', config], { encoding: 'utf8' })
    } catch (error) {
      output = (error as { stdout: string }).stdout
    }
    expect(output).toBe('')
  })

  it.concurrent('client/index.d.ts is what npm run build:client makes from the current routes', async () => {
    expect(readFileSync(CLIENT_TYPES, 'utf8')).toBe(clientTypes())
  })
})
