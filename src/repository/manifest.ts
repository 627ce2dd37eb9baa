/**
 * @module repository/manifest — `<name>/<version>/manifest.json` in the R2 bucket: every file of a
 * published version with its size and sha256, written last by `npm run publish-model`, so its
 * presence marks an upload as complete. Checking files against it is how a truncated or
 * corrupted upload is told from a good one.
 */
import { z } from 'zod'
import type { ModelStore } from './stores'

export const MANIFEST_FILE = 'manifest.json'

/** One file of a version: its path inside the version folder, size, and sha256 in hex. */
export const ManifestFile = z.object({
  path: z.string().min(1),
  bytes: z.int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
})
export type ManifestFile = z.infer<typeof ManifestFile>

export const VersionManifest = z.object({
  files: z.array(ManifestFile).min(1),
  /** The publisher declares that this version's signature differs from the one before it on purpose. */
  signature_change: z.boolean().default(false),
  published_at: z.string().optional(),
})
export type VersionManifest = z.infer<typeof VersionManifest>

/** The sha256 of some bytes, as lowercase hex. */
export async function sha256Hex(bytes: ArrayBuffer): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('')
}

/** Why `bytes` is not the file the manifest records, or `undefined` when it is. */
export async function fileProblem(
  dir: string,
  file: ManifestFile,
  bytes: ArrayBuffer | null,
): Promise<string | undefined> {
  if (bytes === null) return `${dir}/${file.path} is missing`
  if (bytes.byteLength !== file.bytes) {
    const how = bytes.byteLength < file.bytes ? 'truncated: ' : ''
    return `${dir}/${file.path} is ${how}${bytes.byteLength} bytes, the manifest records ${file.bytes}`
  }
  const hash = await sha256Hex(bytes)
  if (hash !== file.sha256)
    return `${dir}/${file.path} is corrupted: sha256 ${hash.slice(0, 12)}…, the manifest records ${file.sha256.slice(0, 12)}…`
  return undefined
}

/**
 * A store that checks each file under `dir` against the manifest as it is read, so a file
 * changed after validation fails the load rather than being served.
 */
export function verifiedStore(store: ModelStore, dir: string, files: ManifestFile[]): ModelStore {
  const byPath = new Map(files.map((f) => [`${dir}/${f.path}`, f]))
  return {
    description: store.description,
    async get(path) {
      const bytes = await store.get(path)
      const file = byPath.get(path)
      if (!file || bytes === null) return bytes
      const problem = await fileProblem(dir, file, bytes)
      if (problem) throw new Error(problem)
      return bytes
    },
  }
}
