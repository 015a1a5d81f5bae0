import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderCodeDocs } from './renderCodeDocs.ts';

// Writes the pages rendered from the error-code and audit-action registries. Run again after
// changing a registry: writing the same text twice changes nothing.
const root = fileURLToPath(new URL('../../', import.meta.url));
for (const doc of renderCodeDocs()) {
  writeFileSync(`${root}${doc.path}`, doc.text);
  console.log(`wrote ${doc.path}`);
}
