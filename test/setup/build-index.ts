// wrangler runs the [build] command before dev and deploy; the test pool does not, so run it here.
import { execFileSync } from 'node:child_process'

export default function setup() {
  execFileSync(process.execPath, ['scripts/build-index.mjs'], { stdio: 'inherit' })
}
