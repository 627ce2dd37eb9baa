// Measurements committed beside the code that makes their models (scripts/dev/test-memory.json, written
// by scripts/dev/test-memory.mjs), added to the measuring cache so that a fresh clone does not measure
// the same models again. Only a pre-filled cache: a figure is used only under its key (the model files'
// digest, METHOD and the shapes, measure.mjs measurementKey), so a model whose files or measuring
// method changed is measured as before.
import { existsSync, readFileSync } from 'node:fs'
import { seedCache } from './measure.mjs'

/** The seed file's measurements (cache key → { folders, entry }: the figures, and which folders they are of); none where the file is missing. */
export function readSeed(path) {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')).measurements ?? {}) : {}
}

/** Adds the seed file's measurements to the cache where it has none under their key; returns how many it added. */
export function seedFrom(path) {
  const seed = readSeed(path)
  return seedCache(Object.fromEntries(Object.entries(seed).map(([key, { entry }]) => [key, entry])))
}
