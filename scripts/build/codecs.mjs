#!/usr/bin/env node
// Writes the image decoders the Worker bundles (src/protocols/images/decode.ts): jSquash's mozjpeg and
// libwebp builds from node_modules, each with the initial memory its wasm module declares cut from
// Emscripten's default 16 MiB to what the module's own data and stack take (two pages). The decoders
// allow memory growth, so a decode's heap becomes what the image needs: a 224×224 photo's decode held
// 16 MiB before. The code is unchanged, byte for byte; only the memory section's minimum differs.
//
// Runs after `npm install` (postinstall), in wrangler's [build] command and before the tests (test/setup),
// so a dependency bump is followed; the copies are gitignored, and rewritten only when they change.
import { mkdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { writeIfChanged } from './files.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const PAGE = 65_536

/** The decoders: the package file, and the name written to OUT. */
export const CODECS = [
  { from: '@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm', to: 'mozjpeg_dec.wasm' },
  { from: '@jsquash/webp/codec/dec/webp_dec.wasm', to: 'webp_dec.wasm' },
]
/** Where the Worker imports them from. */
export const OUT = join(root, 'src/protocols/images/codecs')

function readU32(bytes, at) {
  let value = 0
  let shift = 0
  for (let i = at; ; i++) {
    const byte = bytes[i]
    value += (byte & 0x7f) * 2 ** shift
    shift += 7
    if ((byte & 0x80) === 0) return { value, next: i + 1 }
  }
}

function u32(value) {
  const out = []
  do {
    let byte = value & 0x7f
    value = Math.floor(value / 128)
    if (value > 0) byte |= 0x80
    out.push(byte)
  } while (value > 0)
  return out
}

/** The sections of a wasm module: id, where the content starts, its size. */
function sections(bytes) {
  if (bytes.readUInt32LE(0) !== 0x6d736100 || bytes.readUInt32LE(4) !== 1) throw new Error('not a wasm module (v1)')
  const list = []
  for (let at = 8; at < bytes.length;) {
    const id = bytes[at]
    const { value: size, next } = readU32(bytes, at + 1)
    list.push({ id, start: at, content: next, end: next + size })
    at = next + size
  }
  return list
}

/** The module's one memory: its section, flags, and minimum and maximum in pages (`value`, and where each ends). */
function memoryLimits(bytes, all = sections(bytes)) {
  const memory = all.find((s) => s.id === 5)
  if (!memory) throw new Error('the module defines no memory (an imported one cannot be shrunk here)')
  const count = readU32(bytes, memory.content)
  if (count.value !== 1) throw new Error(`the module defines ${count.value} memories, not 1`)
  const flags = bytes[count.next]
  if (flags !== 0 && flags !== 1) throw new Error(`memory flags ${flags}: shared or 64-bit memory`)
  const min = readU32(bytes, count.next + 1)
  const max = flags === 1 ? readU32(bytes, min.next) : undefined
  return { memory, flags, min, max }
}

/**
 * The module with its one memory's minimum set to the least whole pages above its active data segments
 * and its stack pointer's start (Emscripten's first global), plus one page. Its maximum is kept.
 */
export function shrinkInitialMemory(bytes) {
  const all = sections(bytes)
  const { memory, flags, min, max } = memoryLimits(bytes, all)

  // The highest byte the module writes before any allocation: its data segments and its stack's top.
  let top = 0
  const data = all.find((s) => s.id === 11)
  if (data) {
    let at = data.content
    const n = readU32(bytes, at)
    at = n.next
    for (let i = 0; i < n.value; i++) {
      const kind = readU32(bytes, at)
      if (kind.value !== 0)
        throw new Error(`data segment kind ${kind.value}: only active segments of memory 0 are read`)
      if (bytes[kind.next] !== 0x41 || bytes[kind.next + 1] === undefined)
        throw new Error('a data segment offset is not i32.const')
      const offset = readU32(bytes, kind.next + 1) // non-negative offsets: the sign bit is clear in practice
      if (bytes[offset.next] !== 0x0b) throw new Error('a data segment offset is not a constant expression')
      const length = readU32(bytes, offset.next + 1)
      top = Math.max(top, offset.value + length.value)
      at = length.next + length.value
    }
  }
  const globals = all.find((s) => s.id === 6)
  if (globals) {
    const n = readU32(bytes, globals.content)
    // Emscripten's first global is the stack pointer (mutable i32, initialised to the stack's top).
    const [type, mutable, op] = [bytes[n.next], bytes[n.next + 1], bytes[n.next + 2]]
    if (n.value > 0 && type === 0x7f && mutable === 1 && op === 0x41)
      top = Math.max(top, readU32(bytes, n.next + 3).value)
  }
  const pages = Math.ceil(top / PAGE) + 1
  if (pages >= min.value) return bytes

  const content = [1, flags, ...u32(pages), ...(max ? u32(max.value) : [])]
  return Buffer.concat([
    bytes.subarray(0, memory.start),
    Buffer.from([5, ...u32(content.length), ...content]),
    bytes.subarray(memory.end),
  ])
}

/** The initial memory a module declares, in bytes. */
export function initialMemoryBytes(bytes) {
  return memoryLimits(bytes).min.value * PAGE
}

/** Writes the shrunk decoders into OUT (where they differ); returns their paths. */
export function buildCodecs() {
  const require = createRequire(import.meta.url)
  mkdirSync(OUT, { recursive: true })
  return CODECS.map(({ from, to }) => {
    const patched = shrinkInitialMemory(readFileSync(require.resolve(from)))
    const path = join(OUT, to)
    writeIfChanged(path, patched)
    return path
  })
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  for (const path of buildCodecs())
    console.log(`[codecs] ${path}: initial memory ${initialMemoryBytes(readFileSync(path))} bytes`)
}
