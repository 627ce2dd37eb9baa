/** How the bench's report writes figures (bench/report.mjs, bench/images.mjs). */

/** A number to `digits` decimals, or — when there is none. */
export const fmt = (x, digits = 1) =>
  x === undefined || x === null || Number.isNaN(x) ? '—' : Number(x).toFixed(digits)
export const bytes = (n) =>
  n === undefined ? '—' : n < 2 ** 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 2 ** 20).toFixed(2)} MiB`
/** A cell's in-Worker p50 / p99, from the access-log lines of its requests. */
export const inWorker = (c) => (c.serverP50 === undefined ? '—' : `${c.serverP50} / ${c.serverP99}`)
/** a ÷ b as `1.4×`, or — when either is missing. */
export const ratio = (a, b, digits = 1) =>
  a === undefined || b === undefined || !b ? '—' : `${(a / b).toFixed(digits)}×`
/** A factor with as many decimals as it needs: 12×, 1.4×, 0.83×. */
export const times = (x) =>
  x === undefined || !Number.isFinite(x) ? '—' : `${x.toFixed(x >= 10 ? 0 : x >= 1 ? 1 : 2)}×`
