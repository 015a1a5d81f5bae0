import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The project's own Node: the `node` package in node_modules (Node 24, which strips TypeScript
 * types), whatever Node happens to be first on PATH or runs the caller. Falls back to the
 * running Node when the dependencies are not installed (then it must be 24+ itself).
 */
export function projectNode(): string {
  const local = fileURLToPath(new URL('../node_modules/.bin/node', import.meta.url));
  return existsSync(local) ? local : process.execPath;
}

/** The major version of the running Node. */
export function nodeMajor(): number {
  return Number(process.versions.node.split('.')[0]);
}
