// File writing shared by the build steps that run before every `wrangler dev`.
import { readFileSync, statSync, writeFileSync } from 'node:fs'

/**
 * Writes `bytes` to `path` unless the file already holds them: wrangler dev watches the folders these
 * steps write into (model-assets/, src/) and would rebuild on every write.
 */
export function writeIfChanged(path, bytes) {
  if (statSync(path, { throwIfNoEntry: false })?.size === bytes.length && readFileSync(path).equals(bytes)) return
  writeFileSync(path, bytes)
}
