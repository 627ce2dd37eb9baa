import { defineConfig } from 'vitest/config'
import type { TestProjectInlineConfiguration } from 'vitest/config'
import { BaseSequencer } from 'vitest/node'
import type { TestSpecification } from 'vitest/node'
import { prepareTestAssets, seedTestMeasurements } from './test/setup/assets.ts'
import { textExpectations } from './test/setup/text.ts'

/**
 * `npm test` (scripts/dev/test.mjs) runs the projects as two vitest runs side by side, one per core: the
 * `workers` lane (the workers project, then node) and the `e2e` lane (the e2e project). Unset: all three
 * projects in one run. The lanes took about as long on a fresh clone: see docs/contributing.md.
 */
const lane = process.env.WARMSERVE_TEST_LANE
if (lane !== undefined && lane !== 'workers' && lane !== 'e2e')
  throw new Error(`WARMSERVE_TEST_LANE is 'workers', 'e2e' or unset, not '${lane}'`)

// Before anything measures a model's memory, in either lane (test/setup/assets.ts).
seedTestMeasurements()

/**
 * The files that wait for work started in the background: the zoo's repository, which the e2e global
 * setup assembles and indexes (test/e2e/support/zoo-repo.ts: a few seconds, its measurements seeded from
 * scripts/dev/zoo-memory.json; about a minute of a core where a model must be measured again), and the
 * typed client's checks (test/node/support/global-setup.ts: about 16 CPU-s, taken from idle cores until
 * their test waits for them).
 */
const BACKGROUND_FILES = /\/test\/(e2e\/zoo|node\/client-types)\.test\.ts$/

/**
 * vitest's order (longest first, by the last run's durations; largest first on a fresh clone), with the
 * files that wait for background work last of their project: run first, they would wait for it while
 * their lane had nothing else to run.
 */
class BackgroundLast extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files)
    const waits = (spec: TestSpecification) => BACKGROUND_FILES.test(spec.moduleId)
    // Each after the last of its own project's files: the projects' order (groupOrder) stays.
    const order = sorted.filter((spec) => !waits(spec) || sorted.every((o) => o.project !== spec.project || waits(o)))
    for (const spec of sorted.filter((s) => !order.includes(s))) {
      order.splice(order.findLastIndex((o) => o.project === spec.project) + 1, 0, spec)
    }
    return order
  }
}

const workers = async (): Promise<TestProjectInlineConfiguration> => ({
  // Unit and integration tests, inside workerd with the Worker's own bindings.
  // Not extending this file: a project with plugins resolves a Vite config of its own, and extending would
  // evaluate this file again, assets and text expectations included (about 1.5 s of the main process warm,
  // the phone photos' 6 s more on a fresh clone). The root's sequencer applies to every project anyway.
  extends: false,
  // wrangler.toml, pointed at the bundled models plus the test fixtures.
  // Imported here, not at the top: the e2e lane has no use for it, and loading it takes about 1.2 CPU-s.
  plugins: [
    (await import('@cloudflare/vitest-plugin')).cloudflareTest({
      wrangler: { configPath: await prepareTestAssets() },
      // workerd's --verbose prints every exception a Worker's RPC method rejects with, as
      // "uncaught exception … stack = …", also the errors test/rpc.test.ts provokes and asserts.
      // The Worker logs each failure itself (a 4xx as info, a fault with its stack), and a failing
      // test shows its log lines: WORKERD_VERBOSE=1 npm test brings workerd's own back.
      verbose: process.env.WORKERD_VERBOSE === '1',
      miniflare: {
        // A second Worker calling warmserve's `Models` entrypoint through a service binding, as a
        // user's Worker would (test/rpc.test.ts). The Worker under test runs as the pool's runner,
        // named after this project.
        serviceBindings: { RPC_CALLER: 'rpc-caller' },
        workers: [
          {
            name: 'rpc-caller',
            modules: true,
            scriptPath: 'test/e2e/support/caller/index.js',
            compatibilityDate: '2026-11-01',
            serviceBindings: { MODELS: { name: 'vitest-plugin-runner-workers', entrypoint: 'Models' } },
          },
        ],
      },
    }),
  ],
  test: {
    name: 'workers',
    // Files share one module graph per worker, so tf.js is transformed and imported once per
    // worker instead of once per file (about 5× faster); test/support/each-file.ts starts each file
    // from a fresh isolate state and an empty bucket.
    isolate: false,
    setupFiles: ['test/support/each-file.ts'],
    include: ['test/*.test.ts'],
    // One copy of tf.js: if tfjs-layers resolved tfjs-core apart from src/, tensors of one
    // copy would fail the other's instanceof checks.
    server: { deps: { inline: [/@tensorflow\//] } },
    // tf.js bundled into a few files by esbuild once (cached in node_modules/.vite), rather than
    // its thousands of modules transformed one by one: the pool starts seconds sooner.
    deps: {
      optimizer: {
        ssr: {
          enabled: true,
          include: [
            '@tensorflow/tfjs-core',
            '@tensorflow/tfjs-backend-cpu',
            '@tensorflow/tfjs-backend-wasm',
            '@tensorflow/tfjs-layers',
            '@tensorflow/tfjs-converter',
          ],
        },
      },
    },
    // test/soak.test.ts and test/soak-models.test.ts: bounded in `npm test`, full length with `npm run soak`.
    // test/text.test.ts: tokenizations, scores and vectors computed in Node (test/setup/text.ts).
    provide: {
      soakRequests: Number(process.env.SOAK_REQUESTS ?? 2_000),
      soakRounds: Number(process.env.SOAK_ROUNDS ?? 2),
      textExpectations: await textExpectations(),
    },
    // A bound, not a pace: the soak, the MobileNet and the image fuzzing take 2–4 s alone and
    // share 2 cores with the e2e project's workerd processes; 5 s (vitest's default) was seen
    // to trip on a loaded machine.
    testTimeout: 30_000,
  },
})

const node: TestProjectInlineConfiguration = {
  // The build-time scripts (build-index, reshard) and the typed client from another project, in Node.
  test: {
    name: 'node',
    include: ['test/node/*.test.ts'],
    environment: 'node',
    // The typed client's checks start at once, beside the other tests (global-setup.ts).
    globalSetup: ['test/node/support/global-setup.ts'],
    testTimeout: 120_000,
    // Last, in one process: by then the checks have run beside the other tests.
    isolate: false,
    sequence: { groupOrder: 2 },
  },
}

const e2e: TestProjectInlineConfiguration = {
  // End-to-end tests against real servers: `wrangler dev` as a user runs it, and the deploy bundle in workerd
  // through Miniflare as production runs it (docs/contributing.md, "The e2e servers").
  test: {
    name: 'e2e',
    include: ['test/e2e/*.test.ts'],
    // Servers shared by the files that can share them (test/e2e/support/servers.ts).
    globalSetup: ['test/e2e/support/global-setup.ts'],
    environment: 'node',
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // One file at a time (they share servers), in one module graph: tf.js, which several files
    // use in Node for reference results, is imported once rather than once per file.
    fileParallelism: false,
    isolate: false,
    // After the workers project in one run of every project: the shared servers start while it runs
    // (global-setup.ts); in `npm test` the e2e lane starts them at once.
    sequence: { groupOrder: 1 },
  },
}

export default defineConfig({
  test: {
    // The Worker logs a JSON line per request, load and cron run, and the fault tests provoke error
    // lines on purpose: about 1,700 lines that would bury the results. A failing test's own log
    // lines are still printed with its failure; `npm test -- --silent=false` shows them all.
    silent: 'passed-only',
    sequence: { sequencer: BackgroundLast },
    projects: lane === 'e2e' ? [e2e] : lane === 'workers' ? [await workers(), node] : [await workers(), node, e2e],
  },
})
