#!/usr/bin/env node
// Writes the Analytics Engine schema table into docs/analytics.md, between <!-- schema:start --> and
// <!-- schema:end -->, from the columns defined in src/analytics/schema.ts. `--check` only compares
// (exit 1 when they differ). Needs a Node that strips TypeScript types (22.18+), as the project's
// own does: `npx node scripts/dev/analytics-schema.mjs [--check]`.
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '../..')
const { schemaTable } = await import(join(root, 'src/analytics/schema.ts'))
const path = join(root, 'docs/analytics.md')
const doc = readFileSync(path, 'utf8')
const markers = /(<!-- schema:start -->\n)[\s\S]*?(\n<!-- schema:end -->)/
if (!markers.test(doc)) throw new Error(`${path}: no <!-- schema:start --> … <!-- schema:end --> block`)
const updated = doc.replace(markers, (_, start, end) => `${start}${schemaTable()}${end}`)
if (process.argv.includes('--check')) {
  if (updated !== doc) {
    console.error(
      'docs/analytics.md: the schema table differs from src/analytics/schema.ts; run npx node scripts/dev/analytics-schema.mjs',
    )
    process.exit(1)
  }
} else if (updated !== doc) {
  writeFileSync(path, updated)
  console.log('docs/analytics.md: schema table updated')
}
