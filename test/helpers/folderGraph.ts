import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import ts from 'typescript';

const SKIPPED = new Set(['node_modules', '.git', 'coverage']);

/** Which folder imports which, with one import that makes each edge (for the message). */
export type FolderGraph = Map<string, Map<string, string>>;

/**
 * The folder a file belongs to: `pipeline/<folder>/` inside `pipeline/` (a file directly in
 * `pipeline/`, such as `errors.ts`, is a node of its own), else its top-level folder.
 */
export function folderOf(file: string): string {
  const parts = file.split('/');
  if (parts.length === 1) return file;
  if (parts[0] === 'pipeline') return parts.length > 2 ? `pipeline/${parts[1]}/` : file;
  return `${parts[0]}/`;
}

/**
 * The folder graph of every `.ts` file under `root` (but `node_modules`, `.git`, `coverage`):
 * an edge for each relative import, export-from or dynamic `import()` that crosses from one
 * folder to another, type-only imports included.
 */
export function folderGraph(root: string): FolderGraph {
  const graph: FolderGraph = new Map();
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
      const path = dir ? `${dir}/${entry.name}` : entry.name;
      if (entry.isDirectory() && !SKIPPED.has(entry.name)) walk(path);
      else if (entry.isFile() && entry.name.endsWith('.ts')) files.push(path);
    }
  };
  walk('');
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(join(root, file), 'utf8'), true, true);
    for (const { fileName } of importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const target = join(dirname(file), fileName);
      const [from, to] = [folderOf(file), folderOf(target)];
      if (from === to) continue;
      const edges = graph.get(from) ?? new Map<string, string>();
      if (!edges.has(to)) edges.set(to, `${file} imports ${fileName}`);
      graph.set(from, edges);
    }
  }
  return graph;
}

/**
 * Every loop in the graph: each strongly connected set of two or more folders (Tarjan), as
 * its edges inside the set, sorted, each with the import that makes it. Empty when the
 * folders form layers.
 */
export function folderLoops(graph: FolderGraph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const loops: string[][] = [];
  const visit = (node: string) => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    for (const next of graph.get(node)?.keys() ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (stack.includes(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const members = new Set<string>();
    for (let top = ''; top !== node;) members.add((top = stack.pop()!));
    if (members.size < 2) return;
    loops.push(
      [...members]
        .flatMap((from) =>
          [...(graph.get(from) ?? [])]
            .filter(([to]) => members.has(to))
            .map(([to, why]) => `${from} -> ${to} (${why})`),
        )
        .sort(),
    );
  };
  for (const node of [...graph.keys()].sort()) if (!index.has(node)) visit(node);
  return loops;
}
