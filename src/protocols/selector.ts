/**
 * @module protocols/selector — which version a request names, as both protocols spell it: a version
 * number (`versions/{v}`, `options.version`) or a label (`labels/{l}`, `options.label`).
 */
import { badRequest } from '../core/errors'

/** Parses a `versions/{v}` path segment: a positive integer, as TF Serving's versions are. */
export function parseVersion(segment: string | undefined): number | undefined {
  if (segment === undefined) return undefined
  if (!/^[1-9][0-9]{0,15}$/.test(segment)) throw badRequest(`version '${segment}' is not a positive integer`)
  return Number(segment)
}

// Label names as TF Serving allows them (see version_labels in repository/repository.ts).
const LABEL = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/

/** Parses a `labels/{l}` path segment or an `options.label`. */
export function parseLabel(segment: string): string {
  if (!LABEL.test(segment))
    throw badRequest(`label '${segment}' is not a valid label (a letter, then letters, digits, '_' or '-')`)
  return segment
}
