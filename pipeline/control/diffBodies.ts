/** One changed leaf between two contract bodies. */
export type DiffLine = { op: '+' | '-' | '~'; path: string; before?: unknown; after?: unknown };

/**
 * The leaf-level differences between two JSON values, in path order: `+` added, `-` removed,
 * `~` changed. Arrays compare by index, which reads naturally for the short lists contracts
 * hold (tools, flows, bindings).
 */
export function diffBodies(before: unknown, after: unknown, path = ''): DiffLine[] {
  if (isContainer(before) && isContainer(after) && Array.isArray(before) === Array.isArray(after)) {
    const keys = Array.isArray(before)
      ? Array.from({ length: Math.max(before.length, (after as unknown[]).length) }, (_, i) =>
          String(i),
        )
      : [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((key) => {
      const child = Array.isArray(before) ? `${path}[${key}]` : path ? `${path}.${key}` : key;
      const b = (before as Record<string, unknown>)[key];
      const a = (after as Record<string, unknown>)[key];
      if (b === undefined) return [{ op: '+' as const, path: child, after: a }];
      if (a === undefined) return [{ op: '-' as const, path: child, before: b }];
      return diffBodies(b, a, child);
    });
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  if (before === undefined) return [{ op: '+', path: path || '(root)', after }];
  if (after === undefined) return [{ op: '-', path: path || '(root)', before }];
  return [{ op: '~', path: path || '(root)', before, after }];
}

/** Human lines for a diff: `~ maxSteps: 8 → 10`. */
export function formatDiff(lines: readonly DiffLine[]): string[] {
  const show = (v: unknown) => {
    const text = JSON.stringify(v);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  };
  return lines.map((l) =>
    l.op === '+'
      ? `+ ${l.path}: ${show(l.after)}`
      : l.op === '-'
        ? `- ${l.path}: ${show(l.before)}`
        : `~ ${l.path}: ${show(l.before)} → ${show(l.after)}`,
  );
}

function isContainer(v: unknown): v is Record<string, unknown> | unknown[] {
  return typeof v === 'object' && v !== null;
}
