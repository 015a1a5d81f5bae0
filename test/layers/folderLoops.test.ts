import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { folderGraph, folderLoops, type FolderGraph } from '../helpers/folderGraph.ts';

const repository = folderGraph(fileURLToPath(new URL('../../', import.meta.url)));

const graphOf = (edges: Record<string, string[]>): FolderGraph =>
  new Map(
    Object.entries(edges).map(([from, tos]) => [
      from,
      new Map(tos.map((to) => [to, `${from}x.ts imports ${to}`])),
    ]),
  );

describe('folder-level imports', () => {
  it('has no loop between folders: pipeline/ folders and files, and the top-level folders', () => {
    expect(folderLoops(repository)).toEqual([]);
  });

  it('sees the repository: the stages import the domain folders, which import db', () => {
    expect([...(repository.get('pipeline/stages/')?.keys() ?? [])]).toContain('pipeline/runs/');
    expect([...(repository.get('pipeline/runs/')?.keys() ?? [])]).toContain('db/');
  });

  it('names a loop through three folders, and leaves the folders outside it alone', () => {
    const loops = folderLoops(
      graphOf({
        'pipeline/agent/': ['pipeline/stages/', 'db/'],
        'pipeline/stages/': ['pipeline/approvals/'],
        'pipeline/approvals/': ['pipeline/agent/', 'db/'],
        'ingress/': ['pipeline/agent/'],
      }),
    );
    expect(loops).toEqual([
      [
        'pipeline/agent/ -> pipeline/stages/ (pipeline/agent/x.ts imports pipeline/stages/)',
        'pipeline/approvals/ -> pipeline/agent/ (pipeline/approvals/x.ts imports pipeline/agent/)',
        'pipeline/stages/ -> pipeline/approvals/ (pipeline/stages/x.ts imports pipeline/approvals/)',
      ],
    ]);
  });

  it('finds no loop in layers that only point down', () => {
    expect(
      folderLoops(graphOf({ 'ingress/': ['pipeline/agent/', 'db/'], 'pipeline/agent/': ['db/'] })),
    ).toEqual([]);
  });
});
