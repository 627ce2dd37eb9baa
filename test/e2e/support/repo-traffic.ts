/**
 * The models of the traffic-control end-to-end tests (test/e2e/traffic.test.ts), written into a
 * model repository folder with config.json as a user writes it:
 * - `traffic-split`: iris answering setosa (v1) and versicolor (v2), split 50/50 by `x-client-id`;
 * - `traffic-shadow`: v1 answers setosa and serves every request; v2 answers virginica and shadows
 *   them all; `traffic-baseline` is v1 alone, the answer a shadowed request must equal;
 * - `traffic-digits`: the bundled digits image model with `max_concurrent: 1, max_queue: 0`.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../../../scripts/tools/launch.mjs'
import { irisVariant } from './models'

/** Output biases that make iris answer one class whatever the flower: the version shows in the answer. */
const SETOSA_BIAS: [number, number, number] = [50, 0, 0]
const VERSICOLOR_BIAS: [number, number, number] = [0, 50, 0]
const VIRGINICA_BIAS: [number, number, number] = [0, 0, 50]

function irisModel(repo: string, name: string, versions: Record<string, [number, number, number]>, config?: unknown) {
  mkdirSync(join(repo, name))
  for (const [version, bias] of Object.entries(versions)) irisVariant(join(repo, name), version, bias)
  if (config !== undefined) writeFileSync(join(repo, name, 'config.json'), JSON.stringify(config, null, 2))
}

/** Writes the traffic models into `repo` (a model repository folder). */
export async function addTrafficModels(repo: string): Promise<void> {
  irisModel(
    repo,
    'traffic-split',
    { '1': SETOSA_BIAS, '2': VERSICOLOR_BIAS },
    { traffic: { versions: { '1': 50, '2': 50 }, sticky_header: 'x-client-id' } },
  )
  irisModel(
    repo,
    'traffic-shadow',
    { '1': SETOSA_BIAS, '2': VIRGINICA_BIAS },
    { traffic: { versions: { '1': 100 } }, shadow: { version: 2, fraction: 1 } },
  )
  irisModel(repo, 'traffic-baseline', { '1': SETOSA_BIAS })
  cpSync(join(ROOT, 'model-assets/digits/1'), join(repo, 'traffic-digits', '1'), { recursive: true })
  const digits = JSON.parse(readFileSync(join(ROOT, 'model-assets/digits/config.json'), 'utf8')) as Record<
    string,
    unknown
  >
  writeFileSync(
    join(repo, 'traffic-digits', 'config.json'),
    JSON.stringify({ ...digits, max_concurrent: 1, max_queue: 0 }, null, 2),
  )
}
