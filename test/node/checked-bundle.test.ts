/**
 * The e2e lane serves the bundle `npm run check:bundle` wrote only while it is what a build would make
 * now (checkedBundle in scripts/tools/launch.mjs): a tree of the same shape, then each way it can go stale.
 */
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { checkedBundle } from '../../scripts/tools/launch.mjs'

let root: string
let dir: string
const codec = () => join(root, 'src/codecs/decoder.wasm')
const sha1 = (bytes: string) => createHash('sha1').update(bytes).digest('hex')
/** Sets a file's modification time `seconds` from now. */
const touch = (path: string, seconds: number) => {
  const at = new Date(Date.now() + seconds * 1000)
  utimesSync(path, at, at)
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'checked-bundle-'))
  dir = join(root, '.wrangler/dry-run')
  mkdirSync(join(root, 'src/codecs'), { recursive: true })
  mkdirSync(dir, { recursive: true })
  for (const file of ['wrangler.toml', 'package.json', 'package-lock.json', 'src/index.ts'])
    writeFileSync(join(root, file), file)
  writeFileSync(codec(), 'codec v1')
  for (const path of ['wrangler.toml', 'package.json', 'package-lock.json', 'src/index.ts', 'src/codecs/decoder.wasm'])
    touch(join(root, path), -60)
  // As wrangler writes it: the entry, each wasm module named by its content, esbuild's metafile.
  writeFileSync(join(dir, 'index.js'), 'export default {}')
  writeFileSync(join(dir, `${sha1('codec v1')}-decoder.wasm`), 'codec v1')
  writeFileSync(
    join(dir, 'bundle-meta.json'),
    JSON.stringify({
      inputs: {
        'src/index.ts': {
          imports: [{ path: `./${sha1('codec v1')}-decoder.wasm`, kind: 'import-statement', external: true }],
        },
        'node-built-in-modules:fs': {},
      },
    }),
  )
})

afterEach(() => rmSync(root, { recursive: true, force: true }))

describe('checkedBundle', () => {
  it('serves the bundle while nothing it was made from changed', () => {
    // A module an earlier build left in the folder is not one of its modules.
    writeFileSync(join(dir, `${sha1('codec v0')}-decoder.wasm`), 'codec v0')
    const bundle = checkedBundle(dir, root)
    expect(bundle?.modules.map((m) => m.path)).toEqual([
      join(dir, 'index.js'),
      join(dir, `${sha1('codec v1')}-decoder.wasm`),
    ])
  })

  it('builds again when a source, wrangler.toml or the lockfile changed after it', () => {
    for (const path of ['src/index.ts', 'wrangler.toml', 'package-lock.json']) {
      touch(join(root, path), 60)
      expect(checkedBundle(dir, root), path).toBeUndefined()
      touch(join(root, path), -60)
    }
    expect(checkedBundle(dir, root)).toBeDefined()
  })

  it('builds again when an input is gone, or a wasm module in src/ differs from the one it imports', () => {
    writeFileSync(codec(), 'codec v2')
    touch(codec(), -60)
    expect(checkedBundle(dir, root)).toBeUndefined()
    // Also with the new module's file left in the folder by another build: index.js imports the old one.
    writeFileSync(join(dir, `${sha1('codec v2')}-decoder.wasm`), 'codec v2')
    expect(checkedBundle(dir, root)).toBeUndefined()
    writeFileSync(codec(), 'codec v1')
    expect(checkedBundle(dir, root)).toBeDefined()
    rmSync(join(root, 'src/index.ts'))
    expect(checkedBundle(dir, root)).toBeUndefined()
  })

  it('builds when there is no metafile (a bundle written without --metafile)', () => {
    rmSync(join(dir, 'bundle-meta.json'))
    expect(checkedBundle(dir, root)).toBeUndefined()
  })
})
