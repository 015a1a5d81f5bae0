import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { projectNode } from '../../ops/projectNode.ts';

const CLI = fileURLToPath(new URL('../../ops/awooop.ts', import.meta.url));

/** What one CLI invocation printed and how it exited. */
export type CliResult = { code: number | null; stdout: string; stderr: string };

/** Runs `awooop ...args` as a real child process, with the test's env on top of a clean one. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(projectNode(), [CLI, ...args], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        LOG_LEVEL: 'warn',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
