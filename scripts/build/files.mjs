// File writing shared by the build steps that run before every `wrangler dev`, and by the tests' setup.
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'

/**
 * Writes `bytes` to `path` unless the file already holds them: wrangler dev watches the folders these
 * steps write into (model-assets/, src/) and would rebuild on every write.
 */
export function writeIfChanged(path, bytes) {
  if (statSync(path, { throwIfNoEntry: false })?.size === bytes.length && readFileSync(path).equals(bytes)) return
  writeFileSync(path, bytes)
}

/** Writes `text` to `path` under a name of this process's own, then renames it: a reader sees the old file or the whole new one. */
export function writeWhole(path, text) {
  const partial = `${path}.${process.pid}.tmp`
  writeFileSync(partial, text)
  renameSync(partial, path)
}
