import { readFile } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { sha256Hex } from '../../pipeline/contracts/canonicalJson.ts';
import { parseContract } from '../../pipeline/contracts/formatIssues.ts';
import type { ChannelType } from '../../pipeline/contracts/common.ts';
import { tenantFileSchema, type TenantFile } from '../../pipeline/contracts/tenantFile.ts';
import type { ArtifactInput } from '../../pipeline/control/applyTenant.ts';
import { collectArtifactRefs } from '../../pipeline/control/collectArtifactRefs.ts';
import { ContractViolationError } from '../../pipeline/errors.ts';

const MEDIA_TYPES: Record<string, string> = {
  '.md': 'text/markdown',
  '.txt': 'text/plain',
  '.json': 'application/schema+json',
  '.yaml': 'application/yaml',
  '.yml': 'application/yaml',
};

/**
 * Reads a tenant YAML file and everything it references, and validates all of it before
 * anything is written: YAML syntax, the tenant schema with its cross-references, and each
 * artifact's bytes against the SHA-256 the file declares; a channel type outside
 * `channelTypes` (the registered plugins') is refused. Throws one ContractViolationError
 * listing every problem with the path of the bad field.
 */
export async function loadTenantFile(
  path: string,
  channelTypes: readonly ChannelType[],
): Promise<{ tenant: TenantFile; artifacts: ArtifactInput[] }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ContractViolationError([
      `${path}: cannot read the file (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    ]);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ContractViolationError(
      doc.errors.map(
        (e) =>
          `${path}:${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '')}`,
      ),
    );
  }
  const tenant = parseContract(tenantFileSchema(channelTypes), doc.toJS());
  const base = dirname(resolve(path));
  const issues: string[] = [];
  const artifacts: ArtifactInput[] = [];
  for (const use of collectArtifactRefs(tenant)) {
    let content: Buffer;
    try {
      content = await readFile(resolve(base, use.ref));
    } catch {
      issues.push(`${use.path}.ref: no file ${use.ref} next to ${path}`);
      continue;
    }
    const actual = sha256Hex(content);
    if (actual !== use.sha256) {
      issues.push(`${use.path}.sha256: does not match ${use.ref}, whose SHA-256 is ${actual}`);
      continue;
    }
    if (!artifacts.some((a) => a.ref === use.ref)) {
      artifacts.push({
        ref: use.ref,
        kind: use.kind,
        mediaType: MEDIA_TYPES[extname(use.ref)] ?? 'application/octet-stream',
        content,
      });
    }
  }
  if (issues.length > 0) throw new ContractViolationError(issues);
  return { tenant, artifacts };
}
