import { AUDIT_ACTIONS } from '../../pipeline/contracts/auditActions.ts';
import { ERROR_CODES } from '../../pipeline/errorCodes.ts';

/** One generated doc page: its path from the repository root, and its whole text. */
export type CodeDoc = { path: string; text: string };

/**
 * The doc pages rendered from the code registries: `docs/error-codes.md` from
 * `ERROR_CODES` and `docs/audit-actions.md` from `AUDIT_ACTIONS`, one table row per entry,
 * sorted by name. `node ops/docs/writeCodeDocs.ts` writes them; a test fails when a page
 * and its registry differ.
 */
export function renderCodeDocs(): CodeDoc[] {
  return [
    {
      path: 'docs/error-codes.md',
      text: page(
        'Error codes',
        [
          'Every code the platform raises, answers (`{ "error": { "code", "message" } }`), stores',
          '(`runs.failure_code`, `outbound_messages.error_code` (answers and approval notices alike),',
          '`tool_calls.code`) or puts in an MCP tool result. The registry is',
          '`pipeline/errorCodes.ts`; `AppError.code` is typed by it, so a code that is not',
          'listed there does not compile. A code named after an HTTP status (`METHOD_NOT_ALLOWED`) is',
          'what the edge answers when no route gave a code of its own (`ingress/statusErrorCode.ts`);',
          'any status without an entry answers `HTTP_ERROR`.',
        ],
        'code',
        ERROR_CODES,
      ),
    },
    {
      path: 'docs/audit-actions.md',
      text: page(
        'Audit actions',
        [
          'Every `action` an `audit_events` row carries. The registry is',
          '`pipeline/contracts/auditActions.ts`; `appendAudit` takes only these.',
        ],
        'action',
        AUDIT_ACTIONS,
      ),
    },
  ];
}

function page(
  title: string,
  intro: readonly string[],
  column: string,
  entries: Readonly<Record<string, string>>,
): string {
  const rows = Object.keys(entries)
    .sort()
    .map((name) => `| \`${name}\` | ${entries[name]!.replaceAll('|', '\\|')} |`);
  return [
    `# ${title}`,
    '',
    '<!-- Generated from the registry by `node ops/docs/writeCodeDocs.ts`; do not edit by hand. -->',
    '',
    ...intro,
    '',
    `| ${column} | meaning |`,
    '|---|---|',
    ...rows,
    '',
  ].join('\n');
}
