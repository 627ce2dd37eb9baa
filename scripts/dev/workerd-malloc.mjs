#!/usr/bin/env node
// workerd's native allocator (tcmalloc, linked into the workerd binary) as it sees itself: its live
// bytes, its heap, what it holds free, read through gdb from the process's own MallocExtension
// functions (the binary keeps their symbols). docs/memory.md ("Where the rest grows: workerd's
// allocator") has what it showed over the zoo soak.
//
//   node scripts/dev/workerd-malloc.mjs <pid>            the figures, and VmRSS
//   node scripts/dev/workerd-malloc.mjs <pid> --release  the same, then ReleaseMemoryToSystem and VmRSS again
//
// The process stops while gdb is attached (a few seconds): requests wait. Needs gdb and ptrace rights
// over the process. Find the Worker's workerd as bench/measure.mjs's workerdProcesses does.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

/** MallocExtension's numeric properties (tcmalloc/malloc_extension.h), in bytes. */
const PROPERTIES = [
  'generic.current_allocated_bytes',
  'generic.heap_size',
  'generic.physical_memory_used',
  'tcmalloc.pageheap_free_bytes',
  'tcmalloc.pageheap_unmapped_bytes',
  'tcmalloc.external_fragmentation_bytes',
  'tcmalloc.metadata_bytes',
]

const rss = (pid) => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024

/** The properties (bytes) and the RSS before and, with `release`, after tcmalloc returned what it can. */
export function workerdMalloc(pid, { release = false } = {}) {
  const before = rss(pid)
  const commands = ['set confirm off', 'set $v = (unsigned long *) malloc(8)']
  for (const name of PROPERTIES)
    commands.push(
      'call (void) (*$v = 0)',
      `call (char) MallocExtension_Internal_GetNumericProperty("${name}", ${name.length}, $v)`,
      `printf "${name} %lu\\n", *$v`,
    )
  if (release) commands.push('call (void) MallocExtension_Internal_ReleaseMemoryToSystem(18446744073709551615UL)')
  const out = execFileSync('gdb', ['-p', String(pid), '-batch', '-nx', ...commands.flatMap((c) => ['-ex', c])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    timeout: 180_000,
  })
  const figures = Object.fromEntries(
    [...out.matchAll(/^(\S+) (\d+)$/gm)].filter(([, k]) => PROPERTIES.includes(k)).map(([, k, v]) => [k, Number(v)]),
  )
  return { rss: before, ...figures, ...(release ? { rssAfterRelease: rss(pid) } : {}) }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [pid, flag] = process.argv.slice(2)
  if (!/^\d+$/.test(pid ?? '')) {
    console.error('usage: node scripts/dev/workerd-malloc.mjs <pid> [--release]')
    process.exit(2)
  }
  const figures = workerdMalloc(Number(pid), { release: flag === '--release' })
  for (const [k, v] of Object.entries(figures)) console.log(`${k.padEnd(40)} ${(v / 1024 / 1024).toFixed(1)} MiB`)
}
