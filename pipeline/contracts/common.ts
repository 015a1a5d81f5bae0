// Shared primitives of the six contracts and the pipeline envelopes.
import { z } from 'zod';

const IDENTIFIER = /^[a-z][a-z0-9_-]{0,62}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const SHA256_MESSAGE = 'must be a SHA-256: 64 lowercase hex characters';

/** A name inside a project: agents, policies, flows, channel accounts, servers. */
export const Identifier = z
  .string()
  .regex(IDENTIFIER, "must be lowercase letters, digits, '-' or '_', starting with a letter");
export type Identifier = z.infer<typeof Identifier>;

/** A project (tenant) id. `platform` is reserved for the platform's own audit chain. */
export const ProjectId = z
  .string()
  .regex(
    /^[a-z][a-z0-9_-]{1,62}$/,
    "must be 2-63 lowercase letters, digits, '-' or '_', starting with a letter",
  )
  .refine((v) => v !== 'platform', "'platform' is reserved");
export type ProjectId = z.infer<typeof ProjectId>;

/** Lowercase hex SHA-256. */
export const Sha256Hex = z.string().regex(SHA256_HEX, SHA256_MESSAGE);
export type Sha256Hex = z.infer<typeof Sha256Hex>;

/**
 * A content-addressed artifact: a relative path and the SHA-256 its bytes must have. A
 * backslash is refused too, so a Windows-style `..\` cannot climb out of the tenant's folder.
 */
export const ArtifactRef = z.strictObject({
  ref: z
    .string()
    .min(1)
    .max(500)
    .refine(
      (v) =>
        !v.startsWith('/') &&
        !v.includes('\\') &&
        !v.split('/').includes('..') &&
        !v.includes('://'),
      "must be a relative path inside the tenant's folder (no leading '/', no '\\', no '..', no URL)",
    ),
  sha256: z
    .string({
      error: (issue) =>
        issue.input === undefined ? "required: the SHA-256 of the artifact's bytes" : undefined,
    })
    .regex(SHA256_HEX, SHA256_MESSAGE),
});
export type ArtifactRef = z.infer<typeof ArtifactRef>;

/** A credential reference, resolved at the last moment; a literal credential is refused. */
export const SecretRef = z
  .string()
  .regex(
    /^(secret|env):[A-Za-z_][A-Za-z0-9_.-]{0,127}$/,
    'must be a secret:NAME or env:NAME reference, never a literal credential',
  );
export type SecretRef = z.infer<typeof SecretRef>;

/** How much a tool can change the world, in increasing order. */
export const RiskClass = z.enum(['read', 'write', 'execute', 'destructive']);
export type RiskClass = z.infer<typeof RiskClass>;
/** Risk classes from least to most dangerous. */
export const RISK_ORDER: readonly RiskClass[] = RiskClass.options;

/** Whether risk `a` is at most risk `b`. */
export function riskAtMost(a: RiskClass, b: RiskClass): boolean {
  return RISK_ORDER.indexOf(a) <= RISK_ORDER.indexOf(b);
}

/** How far a flow is trusted to act. */
export const MigrationMode = z.enum(['shadow', 'canary', 'read_only', 'suggest', 'auto_remediate']);
export type MigrationMode = z.infer<typeof MigrationMode>;

/** The channels a run can arrive on and answer to. */
export const ChannelType = z.enum(['telegram', 'line', 'slack', 'discord', 'email', 'api']);
export type ChannelType = z.infer<typeof ChannelType>;

/** A gateway tool as `<server>.<tool>`. */
export const ToolId = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,62}\.[A-Za-z0-9_-]{1,64}$/, 'must be <server>.<tool>');
export type ToolId = z.infer<typeof ToolId>;

/** Kinds of personal data a policy can name for redaction. */
export const PiiClass = z.enum([
  'email',
  'phone',
  'address',
  'payment_card',
  'national_id',
  'person_name',
]);
export type PiiClass = z.infer<typeof PiiClass>;

/**
 * The classes the pattern classifier recognises in a message (`pipeline/sanitize/redactPii.ts`);
 * `address` and `person_name` have no reliable pattern.
 */
export const CLASSIFIED_PII: readonly PiiClass[] = [
  'email',
  'phone',
  'payment_card',
  'national_id',
];

/** An http(s) URL. */
export const HttpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

/** A W3C trace id: 32 lowercase hex characters. */
export const TraceId = z.string().regex(/^[0-9a-f]{32}$/, 'must be 32 lowercase hex characters');
export type TraceId = z.infer<typeof TraceId>;

/**
 * Whether `value` passes `schema`. Cross-reference checks use it to skip a value whose own
 * format check already failed, so one mistake is reported once, at its own field.
 */
export function isWellFormed(schema: z.ZodType, value: unknown): boolean {
  return schema.safeParse(value).success;
}

/** Adds an issue at every repeat of a name in a list; returns the set of names seen. */
export function reportDuplicates(
  ctx: z.RefinementCtx,
  names: readonly string[],
  pathOf: (index: number) => (string | number)[],
  message: (name: string) => string,
): Set<string> {
  const seen = new Set<string>();
  names.forEach((name, i) => {
    if (seen.has(name)) ctx.addIssue({ code: 'custom', path: pathOf(i), message: message(name) });
    seen.add(name);
  });
  return seen;
}

/** The six contract kinds, as stored in `contract_revisions.kind`. */
export const CONTRACT_KINDS = [
  'project',
  'agent',
  'mcp_gateway',
  'policy',
  'runtime',
  'channel',
] as const;
export type ContractKind = (typeof CONTRACT_KINDS)[number];
