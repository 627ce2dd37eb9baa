/**
 * The README and every page under docs/ link only to what exists: each relative link names a file or
 * folder of the repository, and each `#anchor` a heading of the page it points into (GitHub's slugs).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const ROOT = resolve(import.meta.dirname, '../..')
const PAGES = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
]

/** The lines of a Markdown file outside fenced code blocks (a `#` in a shell block is no heading). */
function prose(text: string): string[] {
  let fenced = false
  return text.split('\n').filter((line) => {
    if (line.startsWith('```')) fenced = !fenced
    return !fenced && !line.startsWith('```')
  })
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2… */
export function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '')
    .replace(/ /g, '-')
}

function anchors(file: string): Set<string> {
  const seen = new Map<string, number>()
  const found = new Set<string>()
  for (const line of prose(readFileSync(file, 'utf8'))) {
    const heading = /^#{1,6} (.*)$/.exec(line)?.[1]
    if (heading === undefined) continue
    const base = slug(heading)
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    found.add(n === 0 ? base : `${base}-${n}`)
  }
  return found
}

/** Every `[label](target)` of a page that is not an absolute URL, with its line. */
function links(file: string): { target: string; line: number }[] {
  const out: { target: string; line: number }[] = []
  let fenced = false
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      if (text.startsWith('```')) fenced = !fenced
      if (fenced) return
      // Inline code is not a link: `[x](y)` inside backticks is shown, not followed.
      const outsideCode = text.replace(/`[^`]*`/g, '')
      for (const m of outsideCode.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (!/^[a-z][a-z0-9+.-]*:/i.test(m[1]!)) out.push({ target: m[1]!, line: i + 1 })
      }
    })
  return out
}

describe('documentation links', () => {
  it('finds the pages and their links (the check below is not vacuous)', () => {
    expect(PAGES).toContain('docs/architecture.md')
    expect(PAGES.flatMap((page) => links(join(ROOT, page))).length).toBeGreaterThan(50)
    expect(slug('Traffic control: splits, shadow traffic, overload')).toBe(
      'traffic-control-splits-shadow-traffic-overload',
    )
    expect(slug('Calling from another Worker: the `Models` service binding')).toBe(
      'calling-from-another-worker-the-models-service-binding',
    )
  })

  it.each(PAGES)('every relative link and anchor in %s resolves', (page) => {
    const file = join(ROOT, page)
    const broken: string[] = []
    for (const { target, line } of links(file)) {
      const [path, anchor] = target.split('#') as [string, string | undefined]
      const destination = path === '' ? file : resolve(dirname(file), decodeURI(path))
      if (!existsSync(destination)) {
        broken.push(`${page}:${line}: ${target} (no ${relative(ROOT, destination)})`)
        continue
      }
      if (anchor !== undefined && destination.endsWith('.md') && !anchors(destination).has(anchor)) {
        broken.push(`${page}:${line}: ${target} (no heading '#${anchor}' in ${relative(ROOT, destination)})`)
      }
    }
    expect(broken).toEqual([])
  })
})
