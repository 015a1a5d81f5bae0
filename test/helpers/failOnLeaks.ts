// Wired as a vitest setup file: after every test file, nothing the test helpers opened (a
// pipeline, its stage workers, queues, Redis connections and HTTP server, a TCP proxy) may
// still be open. A leaked worker keeps taking jobs of the next test's making and holds the
// file's process open; this fails the file that leaked it, naming what was left.
import { afterAll } from 'vitest';
import { stillOpen } from './trackOpen.ts';

// Registered before the file's own hooks, so with vitest's stacked hook order it runs after
// them all: what the file closes in its afterAll is closed by now.
afterAll(async () => {
  const open = await stillOpen();
  if (open.length === 0) return;
  await Promise.allSettled(open.map(async (o) => o.forceClose()));
  throw new Error(
    `this file left open what the test helpers started (close it in afterAll): ${open
      .map((o) => o.what)
      .join('; ')}`,
  );
});
