#!/usr/bin/env node
// Copies Swagger UI's browser bundle from node_modules into model-assets/_ui/vendor/, where the
// Worker serves it for /docs (http/routes/pages.ts): the docs page loads nothing from a CDN.
// Runs as part of wrangler's [build] command, after build-index.mjs; the copies are gitignored.
import { mkdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { writeIfChanged } from './files.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
// Only what the page uses: the bundle and its stylesheet (the standalone preset is not needed).
const FILES = ['swagger-ui-bundle.js', 'swagger-ui.css']

/** Copies the vendor files into `<assets>/_ui/vendor`; returns the paths written. */
export function buildUi(assets = join(root, 'model-assets')) {
  const dist = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'))
  const out = join(assets, '_ui', 'vendor')
  mkdirSync(out, { recursive: true })
  return FILES.map((file) => {
    const to = join(out, file)
    writeIfChanged(to, readFileSync(join(dist, file)))
    return to
  })
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // The try-it and docs pages belong to the bundled repository, not to one passed with --assets.
  for (const path of buildUi()) console.log(`[build-ui] wrote ${path}`)
}
