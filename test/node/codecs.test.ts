// scripts/build/codecs.mjs: jSquash's decoders with a small initial memory, their code unchanged.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs script without type declarations
import { buildCodecs, CODECS, initialMemoryBytes, OUT, shrinkInitialMemory } from '../../scripts/build/codecs.mjs'

const require = createRequire(import.meta.url)
/** Node's WebAssembly (this project's Node types do not declare it). */
type ModuleClass = {
  new (bytes: Uint8Array): object
  imports(module: object): unknown[]
  exports(module: object): unknown[]
}
const { Module } = (globalThis as unknown as { WebAssembly: { Module: ModuleClass } }).WebAssembly
type Codec = { from: string; to: string }

describe('the image decoders the Worker bundles', () => {
  it("are the packages' modules with 192 KiB of initial memory instead of 16 MiB, every other byte the same", () => {
    for (const { from } of CODECS as Codec[]) {
      const original = readFileSync(require.resolve(from))
      const shrunk = shrinkInitialMemory(original) as Buffer
      expect(initialMemoryBytes(original), from).toBeGreaterThanOrEqual(16 * 1024 * 1024)
      expect(initialMemoryBytes(shrunk), from).toBe(3 * 65_536)
      // The memory section is the only difference: same imports, exports and code.
      const a = new Module(original)
      const b = new Module(shrunk)
      expect(Module.imports(b)).toEqual(Module.imports(a))
      expect(Module.exports(b)).toEqual(Module.exports(a))
      expect(original.length - shrunk.length).toBe(1) // 258 or 256 pages take two LEB128 bytes, 3 takes one
      // Shrinking again changes nothing.
      expect((shrinkInitialMemory(shrunk) as Buffer).equals(shrunk)).toBe(true)
    }
  })

  it('are written where the Worker imports them, from the installed packages', () => {
    const paths = buildCodecs() as string[]
    expect(paths).toEqual((CODECS as Codec[]).map((c) => join(OUT, c.to)))
    for (const [i, { from }] of (CODECS as Codec[]).entries()) {
      expect(readFileSync(paths[i]!).equals(shrinkInitialMemory(readFileSync(require.resolve(from))))).toBe(true)
    }
  })
})
