import type { ArtifactKind } from '../../db/artifacts.ts';
import type { TenantFile } from '../contracts/tenantFile.ts';

/** One artifact a tenant file references, with the path of the field that references it. */
export type ArtifactRefUse = { path: string; ref: string; sha256: string; kind: ArtifactKind };

/** Every prompt and JSON Schema the tenant's agents reference, in file order. */
export function collectArtifactRefs(tenant: TenantFile): ArtifactRefUse[] {
  return Object.entries(tenant.agents).flatMap(([name, agent]) => {
    const uses: ArtifactRefUse[] = [
      { path: `agents.${name}.prompt`, ...agent.prompt, kind: 'prompt' },
    ];
    if (agent.inputSchema)
      uses.push({ path: `agents.${name}.inputSchema`, ...agent.inputSchema, kind: 'json_schema' });
    if (agent.outputSchema)
      uses.push({
        path: `agents.${name}.outputSchema`,
        ...agent.outputSchema,
        kind: 'json_schema',
      });
    return uses;
  });
}
