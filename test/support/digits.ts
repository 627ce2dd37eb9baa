/** The digits held-out sample as the bundled digits model's images: PNG files of 28×28 gray. */
import { encode as encodePng } from 'fast-png'
import digits from '../fixtures/digits-holdout.json'

/** Held-out digit `i` (test/fixtures/digits-holdout.json) as a PNG file, as a client would send it. */
export const digitPng = (i: number) =>
  encodePng({
    width: 28,
    height: 28,
    channels: 1,
    depth: 8,
    data: Uint8Array.from(digits.images[i]!, (v) => Math.round(v * 255)),
  })
