import { spawnSync } from 'node:child_process';
import { defineConfig } from 'vitest/config';
import { nodeMajor, projectNode } from './ops/projectNode.ts';

// The suite needs Node 24 (slonik, TypeScript type stripping in the child processes it starts).
// Started by an older Node first on PATH (`node node_modules/.bin/vitest`, a global vitest),
// run the same command again under the project's own Node instead of failing half-way.
if (nodeMajor() < 24) {
  const node = projectNode();
  if (node === process.execPath) {
    throw new Error(`the tests need Node 24; this is ${process.version} (run npm test)`);
  }
  const rerun = spawnSync(node, process.argv.slice(1), { stdio: 'inherit' });
  process.exit(rerun.status ?? 1);
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/globalSetup.ts'],
    // After each file: fails it if a pipeline, worker, queue or connection the helpers
    // started is still open.
    setupFiles: ['test/helpers/failOnLeaks.ts'],
    // Generous: the limits only matter when something hangs, and a loaded machine is slow.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    // Each file has its own database and key prefix, so files run in parallel safely. The
    // files mostly wait (on Postgres, Redis, fakes and child processes), so three at a time
    // even on two cores; the default (cores - 1) would run them one by one there.
    pool: 'forks',
    maxWorkers: 3,
  },
});
