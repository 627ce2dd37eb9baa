import { cloudflareTest } from '@cloudflare/vitest-plugin'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    projects: [
      {
        // Unit and integration tests, inside workerd with the Worker's own bindings.
        plugins: [cloudflareTest({ wrangler: { configPath: './wrangler.toml' } })],
        test: {
          name: 'workers',
          include: ['test/*.test.ts'],
          globalSetup: ['test/setup/build-index.ts'],
          // One copy of tf.js: if tfjs-layers resolved tfjs-core apart from src/, tensors of one
          // copy would fail the other's instanceof checks.
          server: { deps: { inline: [/@tensorflow\//] } },
        },
      },
      {
        // End-to-end tests against a real `wrangler dev`, as a user runs it.
        test: {
          name: 'e2e',
          include: ['test/e2e/*.test.ts'],
          environment: 'node',
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
    ],
  },
})
