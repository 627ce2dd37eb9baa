/**
 * @module repository/pointer — `_pointer.json` at the root of the R2 bucket: which R2 versions the
 * cron handler has validated (and so may be served), the current one per model, the candidates it
 * rejected and why, and each model's config.json from the bucket. Only the cron handler writes it;
 * serving isolates re-read it every REFRESH_INTERVAL. It is how refresh crosses isolates: a cron
 * event cannot reach the module state of the isolates serving traffic, but they can all read R2.
 */
import { z } from 'zod'
import { ManifestFile } from './manifest'

/** The `_` keeps it apart from model folders, whose names start with a letter or digit. */
export const POINTER_KEY = '_pointer.json'

/** A validated version, described as the repository index describes a bundled one, plus its files' hashes. */
export const PublishedVersion = z.object({
  format: z.enum(['layers-model', 'graph-model']),
  files: z.array(ManifestFile),
  weightBytes: z.int().nonnegative(),
  totalBytes: z.int().nonnegative(),
  signature: z.unknown(),
  /** The manifest this validation read: a re-upload changes it, and the version is validated again. */
  manifestEtag: z.string(),
  validatedAt: z.string(),
})
export type PublishedVersion = z.infer<typeof PublishedVersion>

/** A candidate the cron handler refused, kept so its reason shows in the model's status. */
export const Rejection = z.object({
  reason: z.string(),
  manifestEtag: z.string(),
  at: z.string(),
  /** The number was accepted once with other files: refused whatever is uploaded under it again, until its folder is deleted. */
  replaced: z.boolean().optional(),
  /** Set on the entries of `PointerModel.deferred`: not a verdict. */
  deferred: z.boolean().optional(),
})
export type Rejection = z.infer<typeof Rejection>

export const PointerModel = z.object({
  /** The highest validated version in the bucket: what "latest" serves unless a bundled version is higher. */
  current: z.int().positive().nullable(),
  versions: z.record(z.string(), PublishedVersion),
  rejected: z.record(z.string(), Rejection),
  /**
   * Candidates the cron handler could not validate yet for a reason not theirs (R2, the wasm
   * backend): no verdict, validated again on the next run, kept so the model's status says why.
   */
  deferred: z.record(z.string(), Rejection).optional(),
  /** `<name>/config.json` from the bucket, already checked; it replaces a bundled config.json. */
  config: z.unknown().optional(),
})
export type PointerModel = z.infer<typeof PointerModel>

export const Pointer = z.object({
  schema: z.literal(1),
  publishedAt: z.string(),
  models: z.record(z.string(), PointerModel),
})
export type Pointer = z.infer<typeof Pointer>

export const emptyPointer = (): Pointer => ({ schema: 1, publishedAt: new Date(0).toISOString(), models: {} })

/** A pointer read from the bucket, with the etag that a later conditional read compares against. */
export interface PointerRead {
  pointer: Pointer
  etag: string | null
}

/**
 * Reads the pointer. With `knownEtag`, R2 answers without a body when it is unchanged, and this
 * returns `'unchanged'`. No pointer at all is an empty one: an empty bucket serves only bundled models.
 * @throws when R2 fails or the object is not a pointer
 */
export async function readPointer(bucket: R2Bucket, knownEtag?: string | null): Promise<PointerRead | 'unchanged'> {
  const object = await bucket.get(POINTER_KEY, knownEtag ? { onlyIf: { etagDoesNotMatch: knownEtag } } : undefined)
  if (object === null) return { pointer: emptyPointer(), etag: null }
  if (!('body' in object)) return 'unchanged'
  const result = Pointer.safeParse(await object.json())
  if (!result.success) throw new Error(`${POINTER_KEY} is invalid: ${z.prettifyError(result.error)}`)
  return { pointer: result.data, etag: object.etag }
}

/** Writes the pointer; JSON, so `wrangler r2 object get` shows it readably. */
export async function writePointer(bucket: R2Bucket, pointer: Pointer): Promise<void> {
  await bucket.put(POINTER_KEY, JSON.stringify(pointer, null, 2), { httpMetadata: { contentType: 'application/json' } })
}
