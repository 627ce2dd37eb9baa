/** The project's one seeded generator (scripts/dev/random.mjs), typed for the tests. */
// @ts-expect-error: a plain .mjs module without type declarations
import { random as mulberry32 } from '../../scripts/dev/random.mjs'

/** A deterministic pseudo-random stream in [0, 1) (mulberry32): a failing sequence can be replayed from its seed. */
export const random: (seed: number) => () => number = mulberry32
