/**
 * The project test/node/client-types.test.ts compiles against client/index.d.ts: the README's calls,
 * plus lines that must not compile (so the types have not decayed to `any`).
 */

export const CLIENT_MAIN = `import { hc } from 'hono/client'
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

/**
 * Strict, no skipLibCheck, no Cloudflare types. nodenext is the strictest resolution an ESM project
 * uses (package exports, explicit extensions); a bundler's resolution accepts whatever it accepts.
 */
export const CLIENT_OPTIONS = {
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
