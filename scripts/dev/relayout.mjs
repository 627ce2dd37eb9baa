#!/usr/bin/env node
/**
 * The relayout codemod: moves files into subsystem folders (src/core, src/cache, src/traffic,
 * src/rpc; test helpers into support/ folders; scripts into build/, tools/ and dev/) with `git mv`,
 * and rewrites every reference to a moved file from a declared old → new map:
 *
 * - relative import specifiers (`from './cache'`, `import('../x.mjs')`, `vi.mock`, `export … from`)
 *   in src/, test/, scripts/, bench/, client/ and the root configs, resolved from the importing
 *   file's old place and written from its new one;
 * - other relative path literals (`new URL('..', import.meta.url)`, `join(dir, '../fixtures')`) in
 *   files that move, the same way, so a script one folder deeper still finds the repository root;
 * - repository paths in text (`scripts/build/build-index.mjs` in package.json, wrangler.toml's [build],
 *   vitest.config.ts, comments, docs), and src-relative ones with a folder (`http/routes/v2.ts`);
 * - a few symbol renames that would have conflicted with parallel work if made before the merge.
 *
 * Files the map does not name stay where they are; their imports of moved files are rewritten too.
 * A path named by the map but absent from the tree is skipped with a line saying so.
 *
 * Usage (from the repository root, on a clean tree):
 *   node scripts/dev/relayout.mjs --dry-run   # prints the moves and the files it would rewrite
 *   node scripts/dev/relayout.mjs             # moves, rewrites; then review and commit
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, posix, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/** Old path → new path, repository-relative. A folder (trailing `/`) moves with everything in it. */
export const MOVES = {
  // src/core: what every subsystem uses.
  'src/core/config.ts': 'src/core/config.ts',
  'src/core/errors.ts': 'src/core/errors.ts',
  'src/core/log.ts': 'src/core/log.ts',
  'src/core/metrics.ts': 'src/core/metrics.ts',
  // src/cache: the model cache, leases, the memory budget and its ledger, the prediction cache.
  'src/cache/model-cache.ts': 'src/cache/model-cache.ts',
  'src/cache/lease.ts': 'src/cache/lease.ts',
  'src/cache/admission.ts': 'src/cache/admission.ts',
  'src/cache/memory-ledger.ts': 'src/cache/memory-ledger.ts',
  'src/cache/prediction-cache.ts': 'src/cache/prediction-cache.ts',
  // src/traffic: routing, splits, shadow runs, gates.
  'src/traffic/traffic.ts': 'src/traffic/traffic.ts',
  'src/traffic/gate.ts': 'src/traffic/gate.ts',
  // src/rpc: the service-binding transport.
  'src/rpc/entrypoint.ts': 'src/rpc/entrypoint.ts',
  'src/rpc/types.ts': 'src/rpc/types.ts',
  // src/analytics: the fleet's view, data points to Workers Analytics Engine.
  'src/analytics/analytics.ts': 'src/analytics/analytics.ts',
  'src/analytics/schema.ts': 'src/analytics/schema.ts',
  // src/http: the HTTP transport, with both protocols' routes (their cores stay in src/protocols).
  'src/http/client.ts': 'src/http/client.ts',
  'src/http/routes/v2.ts': 'src/http/routes/v2.ts',
  'src/http/routes/tf-serving.ts': 'src/http/routes/tf-serving.ts',
  // test/support: the workers project's helpers.
  'test/support/helpers.ts': 'test/support/helpers.ts',
  'test/support/r2-helpers.ts': 'test/support/r2-helpers.ts',
  'test/support/wasm-helpers.ts': 'test/support/wasm-helpers.ts',
  'test/support/each-file.ts': 'test/support/each-file.ts',
  'test/support/provided.d.ts': 'test/support/provided.d.ts',
  'test/support/parse-prometheus-text-format.d.ts': 'test/support/parse-prometheus-text-format.d.ts',
  'test/support/truncate.ts': 'test/support/truncate.ts',
  // test/e2e/support: the e2e project's servers, fixtures and helpers.
  'test/e2e/support/caller/': 'test/e2e/support/caller/',
  'test/e2e/support/chromium.ts': 'test/e2e/support/chromium.ts',
  'test/e2e/support/fixture-repo.ts': 'test/e2e/support/fixture-repo.ts',
  'test/e2e/support/fixture-server.ts': 'test/e2e/support/fixture-server.ts',
  'test/e2e/support/global-setup.ts': 'test/e2e/support/global-setup.ts',
  'test/e2e/support/http.ts': 'test/e2e/support/http.ts',
  'test/e2e/support/image-models.ts': 'test/e2e/support/image-models.ts',
  'test/e2e/support/models.ts': 'test/e2e/support/models.ts',
  'test/e2e/support/repo-rpc.ts': 'test/e2e/support/repo-rpc.ts',
  'test/e2e/support/repo-traffic.ts': 'test/e2e/support/repo-traffic.ts',
  'test/e2e/support/servers.ts': 'test/e2e/support/servers.ts',
  // test/node/support: the node project's setup.
  'test/node/support/client-project.ts': 'test/node/support/client-project.ts',
  'test/node/support/global-setup.ts': 'test/node/support/global-setup.ts',
  // scripts/build: steps wrangler and npm run for you.
  'scripts/build/build-index.mjs': 'scripts/build/build-index.mjs',
  'scripts/build/memory/': 'scripts/build/memory/',
  'scripts/tools/add-model.mjs': 'scripts/tools/add-model.mjs',
  'scripts/tools/models/': 'scripts/tools/models/',
  'scripts/tools/dev-address.mjs': 'scripts/tools/dev-address.mjs',
  'scripts/tools/dev-address.d.mts': 'scripts/tools/dev-address.d.mts',
  'scripts/dev/zoo.mjs': 'scripts/dev/zoo.mjs',
  'scripts/dev/wordpiece.mjs': 'scripts/dev/wordpiece.mjs',
  'scripts/dev/hostile-images.mjs': 'scripts/dev/hostile-images.mjs',
  'scripts/dev/measure-decode-work.mjs': 'scripts/dev/measure-decode-work.mjs',
  'scripts/dev/make-samples.mjs': 'scripts/dev/make-samples.mjs',
  'scripts/dev/analytics-schema.mjs': 'scripts/dev/analytics-schema.mjs',
  'scripts/build/build-ui.mjs': 'scripts/build/build-ui.mjs',
  // scripts/tools: what a user runs.
  'scripts/tools/start.mjs': 'scripts/tools/start.mjs',
  'scripts/tools/launch.mjs': 'scripts/tools/launch.mjs',
  'scripts/tools/launch.d.mts': 'scripts/tools/launch.d.mts',
  'scripts/tools/publish-model.mjs': 'scripts/tools/publish-model.mjs',
  'scripts/tools/reshard.mjs': 'scripts/tools/reshard.mjs',
  // scripts/dev: developing warmserve itself.
  'scripts/dev/train.mjs': 'scripts/dev/train.mjs',
  'scripts/dev/train-report.json': 'scripts/dev/train-report.json',
  'scripts/dev/build-client.mjs': 'scripts/dev/build-client.mjs',
  'scripts/dev/build-fixtures.mjs': 'scripts/dev/build-fixtures.mjs',
  'scripts/dev/build-image-model.mjs': 'scripts/dev/build-image-model.mjs',
  'scripts/dev/make-image-fixtures.mjs': 'scripts/dev/make-image-fixtures.mjs',
  'scripts/dev/measure-codecs.mjs': 'scripts/dev/measure-codecs.mjs',
}

/** Paths built from segments, which no path rewrite can see: exact text → replacement, in the files named. */
const SEGMENTS = [{ files: /^bench\//, from: "'scripts', 'launch.mjs'", to: "'scripts', 'tools', 'launch.mjs'" }]

/**
 * Symbol renames for one word per concept (docs/architecture.md's glossary), whole words in the
 * files named (by their new path): the model cache's per-version record is an entry, not a slot;
 * settling a load is not admission; the budget grants rows, not slots.
 */
const RENAMES = [
  { file: 'src/cache/model-cache.ts', words: { Slot: 'CacheEntry', slots: 'entries', slot: 'entry', admit: 'settle' } },
  { file: 'src/runtime/sub-batches.ts', words: { Slot: 'RowGrant', slot: 'grant' } },
  { file: 'src/cache/admission.ts', words: { Slot: 'RowGrant' } },
]

/** Where text is rewritten: code and config under these, and the root files below. */
const CODE_DIRS = ['src/', 'test/', 'scripts/', 'bench/', 'client/', 'docs/', '.ci/']
const ROOT_FILES = [
  '.gitignore',
  'package.json',
  'wrangler.toml',
  'vitest.config.ts',
  'tsconfig.json',
  'tsconfig.node.json',
  '.dependency-cruiser.cjs',
  'README.md',
  '.prettierignore',
]
const TEXT = /\.(ts|mts|cts|mjs|cjs|js|json|toml|md|d\.ts)$|^\.ci\/run$|^\.gitignore$/
// Generated or data files: their paths inside are rewritten by regenerating them, not here.
const SKIP = /^test\/fixtures\/|^model-assets\/|package-lock\.json$/
const CODE = /\.(ts|mts|cts|mjs|cjs|js)$/
const EXTENSIONS = ['', '.ts', '.mts', '.mjs', '.js', '.d.ts', '.d.mts', '/index.ts', '/index.js']

const git = (...args) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' })

function main() {
  const dryRun = process.argv.includes('--dry-run')
  const files = git('ls-files', '-co', '--exclude-standard')
    .split('\n')
    .filter(Boolean)
    .filter((f) => existsSync(join(ROOT, f)))
  const present = new Set(files)
  const dirs = new Set(
    files.flatMap((f) =>
      f
        .split('/')
        .slice(0, -1)
        .map((_, i, parts) => parts.slice(0, i + 1).join('/')),
    ),
  )

  // Every file that moves, the folder entries expanded.
  const moves = new Map()
  for (const [from, to] of Object.entries(MOVES)) {
    if (from.endsWith('/')) {
      const inside = files.filter((f) => f.startsWith(from))
      if (inside.length === 0) console.log(`[relayout] skipped ${from}: not in the tree`)
      for (const f of inside) moves.set(f, to + f.slice(from.length))
    } else if (present.has(from)) moves.set(from, to)
    else console.log(`[relayout] skipped ${from}: not in the tree`)
  }
  for (const to of moves.values())
    if (present.has(to)) throw new Error(`relayout: ${to} exists already; has the relayout run?`)

  /** The new place of an old path (file or folder); unchanged when it does not move. */
  const moved = (path) => {
    if (moves.has(path)) return moves.get(path)
    for (const [from, to] of Object.entries(MOVES))
      if (from.endsWith('/') && (path + '/').startsWith(from)) return to + path.slice(from.length)
    return path
  }

  /** An old file or folder a relative literal names from `dir`, with the suffix resolution added. */
  const target = (dir, spec) => {
    const base = posix.normalize(posix.join(dir, spec))
    if (base.startsWith('..')) return undefined
    for (const ext of EXTENSIONS) {
      const path = base + ext
      if (present.has(path)) return { path, ext }
    }
    if (base === '.' || dirs.has(base)) return { path: base, ext: '', dir: true }
    // Untracked and ignored paths (node_modules/, build output) do not move, but a moved file's path to them changes.
    if (existsSync(join(ROOT, base))) return { path: base, ext: '', dir: true }
    return undefined
  }

  /** A relative literal rewritten from the file's new place to the target's new place, or as it was. */
  const respecify = (spec, oldDir, newDir) => {
    const found = target(oldDir, spec)
    if (!found) return spec
    const newTarget = moved(found.path)
    let path = posix.relative(newDir, newTarget === '.' ? '' : newTarget) || '.'
    if (found.ext) path = path.slice(0, path.length - found.ext.length)
    if (spec.endsWith('/') && !path.endsWith('/')) path += '/'
    if (!path.startsWith('.')) path = './' + path
    return path === spec || posix.normalize(path) === posix.normalize(spec) ? spec : path
  }

  // Repository paths in text: the longest first, so a folder entry never eats a longer file path.
  const textual = [...moves].sort((a, b) => b[0].length - a[0].length)
  const srcRelative = textual
    .filter(([from, to]) => from.startsWith('src/') && from.slice(4).includes('/'))
    .map(([from, to]) => [from.slice(4), to.slice(4)])
  const boundary = (path) => new RegExp(`(?<![\\w./-])${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w-])`, 'g')
  const textRules = [...textual, ...srcRelative].map(([from, to]) => [boundary(from), to])
  // A module's name in its header (`@module http/routes/v2`) and a package path without extension ('warmserve/src/rpc/types').
  const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  for (const [from, to] of textual.filter(([from]) => from.startsWith('src/') && from.endsWith('.ts'))) {
    const [oldName, newName] = [from.slice(4, -3), to.slice(4, -3)]
    textRules.push([new RegExp(`@module ${escape(oldName)}(?![\\w/-])`, 'g'), `@module ${newName}`])
    textRules.push([new RegExp(`(?<=['"/])src/${escape(oldName)}(?=['"])`, 'g'), `src/${newName}`])
  }
  // A Markdown link into the tree from docs/ (`](../src/cache/model-cache.ts)`): docs do not move, so only the target changes.
  for (const [from, to] of textual)
    textRules.push([new RegExp(`(?<=\\]\\((?:\\.\\./)*)${escape(from)}(?![\\w-])`, 'g'), to])
  // A folder named without its trailing slash (`test/e2e/support/caller/index.js` is a file path; `test/e2e/support/caller` alone too).
  for (const [from, to] of Object.entries(MOVES))
    if (from.endsWith('/')) textRules.push([boundary(from.slice(0, -1)), to.slice(0, -1)])

  const rewritten = new Map()
  for (const file of files) {
    if (SKIP.test(file) || !TEXT.test(file)) continue
    if (!CODE_DIRS.some((d) => file.startsWith(d)) && !ROOT_FILES.includes(file)) continue
    const before = readFileSync(join(ROOT, file), 'utf8')
    const newFile = moved(file)
    const oldDir = posix.dirname(file)
    const newDir = posix.dirname(newFile)
    let text = before
    if (CODE.test(file)) {
      if (newFile === file) {
        // A file that stays: its import specifiers follow the files they name.
        text = text.replace(
          /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*|\bvi\.mock\s*\(\s*|reference path=)(['"])(\.{1,2}\/[^'"\n]*)\2/g,
          (all, lead, quote, spec) => `${lead}${quote}${respecify(spec, oldDir, newDir)}${quote}`,
        )
      } else {
        // A file that moves: every relative literal (imports, `new URL('..', import.meta.url)`) keeps pointing where it did.
        text = text.replace(
          /(?<![\w.$])(['"`])(\.\.(?:\/[^'"`\s$]*)?|\.\/[^'"`\s$]+)\1/g,
          (all, quote, spec) => `${quote}${respecify(spec, oldDir, newDir)}${quote}`,
        )
      }
    }
    for (const [pattern, to] of textRules) text = text.replace(pattern, to)
    for (const rule of SEGMENTS) if (rule.files.test(file)) text = text.split(rule.from).join(rule.to)
    for (const rule of RENAMES) {
      if (rule.file !== newFile) continue
      for (const [from, to] of Object.entries(rule.words)) text = text.replace(new RegExp(`\\b${from}\\b`, 'g'), to)
    }
    if (text !== before) rewritten.set(file, text)
  }

  console.log(`[relayout] ${moves.size} files move, ${rewritten.size} files are rewritten`)
  if (dryRun) {
    for (const [from, to] of moves) console.log(`  git mv ${from} ${to}`)
    for (const file of rewritten.keys()) console.log(`  rewrite ${file}`)
    return
  }
  for (const [from, to] of moves) {
    mkdirSync(dirname(join(ROOT, to)), { recursive: true })
    if (git('ls-files', from).trim()) git('mv', from, to)
    else execFileSync('mv', [join(ROOT, from), join(ROOT, to)])
  }
  for (const [file, text] of rewritten) writeFileSync(join(ROOT, moved(file)), text)
  // A folder left empty by the moves (test/e2e/support/caller) goes.
  for (const from of moves.keys()) {
    const dir = join(ROOT, dirname(from))
    if (
      existsSync(dir) &&
      statSync(dir).isDirectory() &&
      git('ls-files', '-co', '--exclude-standard', relative(ROOT, dir)).trim() === ''
    ) {
      try {
        execFileSync('rmdir', [dir])
      } catch {
        // Not empty (ignored files such as build output): left as is.
      }
    }
  }
  console.log('[relayout] done: run npm run typecheck, npm run check:deps, npm run check:bundle, then commit')
}

main()
