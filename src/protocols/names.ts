/**
 * @module protocols/names — the input and output names a request gives, checked against the model's
 * signature: the same rules for every protocol and every transport.
 */
import { badRequest, missingFromModel, quote } from '../core/errors'
import type { ModelLease } from '../cache/lease'
import type { Signature } from '../runtime/signature'

/**
 * The outputs a request gets: those it names, else the model's `default_outputs`, else all.
 * Naming an unknown output is the client's mistake (400); a config.json naming one is ours (503,
 * errors.ts `configFault`).
 */
export function outputNames({ target, lease }: ModelLease, requested?: string[]): string[] {
  const known = lease.model.signature.outputs.map((s) => s.name)
  for (const name of requested ?? []) {
    if (!known.includes(name))
      throw badRequest(
        `unknown output ${quote(name)}; the model's outputs are ${known.map((n) => `'${n}'`).join(', ')}`,
      )
  }
  const defaults = target.config.default_outputs
  for (const name of defaults ?? []) {
    if (!known.includes(name)) throw missingFromModel(target.name, 'default_outputs', name, 'output', known)
  }
  return requested ?? defaults ?? known
}

/**
 * Checks the input names a request gives against the signature: none unknown, none given twice,
 * none missing. `where` prefixes the message (`instances[2]`), where the protocol has a place to name.
 */
export function checkInputNames(signature: Signature, given: string[], where?: string): void {
  const prefix = where === undefined ? '' : `${where}: `
  const known = new Set(signature.inputs.map((s) => s.name))
  const list = signature.inputs.map((s) => `'${s.name}'`).join(', ')
  const seen = new Set<string>()
  for (const name of given) {
    if (!known.has(name)) throw badRequest(`${prefix}unknown input ${quote(name)}; the model's inputs are ${list}`)
    if (seen.has(name)) throw badRequest(`${prefix}input ${quote(name)} is given twice`)
    seen.add(name)
  }
  const missing = signature.inputs.find((s) => !seen.has(s.name))
  if (missing) throw badRequest(`${prefix}missing input '${missing.name}'; the model's inputs are ${list}`)
}
