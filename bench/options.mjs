/** `npm run bench`'s command-line options and the log line every part of the bench writes. */
import { IMAGE_MODEL } from '../scripts/dev/build-image-model.mjs'

const argv = process.argv.slice(2)
export const flag = (name) => argv.includes(`--${name}`)
const option = (name, fallback) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : fallback
}
export const QUICK = flag('quick')
/**
 * Where the report goes: bench/out/ (untracked) by default, so a run never changes the committed
 * report by accident; `--update-report` writes bench/RESULTS.md and bench/latency.svg, the ones the
 * README quotes.
 */
export const REPORT_DIR = flag('update-report') ? 'bench' : 'bench/out'
/** Seconds per warm cell. */
export const DURATION = Number(option('duration', QUICK ? 2 : 6))
export const CONCURRENCY = [1, 8, 32]
export const MEMORY_REQUESTS = QUICK ? 100 : 1000
/** The most a top-up to MEMORY_REQUESTS may take. */
export const MEMORY_TOPUP_CAP_S = QUICK ? 5 : 25
export const FLOOR_SECONDS = QUICK ? 1 : 3
export const ISOLATE_LIMIT_MB = 128
export const MODELS = option('models', `iris,digits,${IMAGE_MODEL}`).split(',')
export const BACKENDS = option('backends', 'wasm,cpu').split(',')
/** `--before REF`: also serve the bundle of git REF (e.g. main) in the issue 13 run, for "not lower than before". */
export const BEFORE = option('before', undefined)

export const log = (line) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`)
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
