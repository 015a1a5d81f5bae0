import { createHash } from 'node:crypto';

/**
 * The name a model sees for a gateway tool `<server>.<tool>`: providers allow only
 * `[A-Za-z0-9_-]{1,64}`, so `<server>__<tool>`, or a hashed prefix when that is too long.
 */
export function modelToolName(toolId: string): string {
  const plain = toolId.replace('.', '__');
  if (plain.length <= 64) return plain;
  const hash = createHash('sha256').update(toolId).digest('hex').slice(0, 12);
  return `t${hash}_${toolId.slice(toolId.indexOf('.') + 1)}`.slice(0, 64);
}

/** Maps the names offered to a model back to tool ids; a name never offered maps to null. */
export function toolIdResolver(offered: readonly string[]): (name: string) => string | null {
  const byName = new Map(offered.map((toolId) => [modelToolName(toolId), toolId]));
  return (name) => byName.get(name) ?? null;
}
