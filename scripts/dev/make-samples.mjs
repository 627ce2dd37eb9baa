#!/usr/bin/env node
// Writes the sample images the README's examples send (committed; `npm run make-samples` makes them
// again): examples/digit.png, a held-out MNIST "7" the bundled `digits` model never trained on, as
// the 28×28 grayscale PNG it takes; examples/cat.jpg, Chelsea the cat (scikit-image's sample photo,
// public domain), the JPEG in test/fixtures/models/_images/.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { encode } from 'fast-png'
import { ROOT } from '../tools/launch.mjs'

export const SAMPLES = join(ROOT, 'examples')

/** The first held-out digit with this label, as 8-bit grayscale pixels (the fixture holds [0, 1] values). */
export function heldOutDigit(label) {
  const holdout = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/digits-holdout.json'), 'utf8'))
  const i = holdout.labels.indexOf(label)
  if (i < 0) throw new Error(`no held-out digit ${label}`)
  return Uint8Array.from(holdout.images[i], (v) => Math.round(v * 255))
}

if (import.meta.url === `file://${process.argv[1]}`) {
  mkdirSync(SAMPLES, { recursive: true })
  writeFileSync(
    join(SAMPLES, 'digit.png'),
    encode({ width: 28, height: 28, channels: 1, depth: 8, data: heldOutDigit(7) }),
  )
  copyFileSync(join(ROOT, 'test/fixtures/models/_images/chelsea.jpg'), join(SAMPLES, 'cat.jpg'))
  console.log(`[make-samples] wrote ${join(SAMPLES, 'digit.png')} and ${join(SAMPLES, 'cat.jpg')}`)
}
