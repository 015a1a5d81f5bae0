import { z } from 'zod';
import { HttpUrl, isWellFormed, PiiClass, SecretRef } from './common.ts';

/** Where an `anthropic` target without a `baseUrl` sends its calls. */
export const ANTHROPIC_BASE_URL = 'https://api.anthropic.com';

/** One model a route can call. `echo` is offline and needs no key. */
export const ModelTarget = z.discriminatedUnion('provider', [
  z.strictObject({ provider: z.literal('echo'), model: z.string().min(1).default('echo') }),
  z.strictObject({
    provider: z.literal('openai_compatible'),
    model: z.string().min(1),
    baseUrl: HttpUrl,
    apiKey: SecretRef.optional(),
    timeoutMs: z.int().min(100).max(600_000).default(60_000),
    maxOutputTokens: z.int().min(1).max(200_000).default(1024),
  }),
  z.strictObject({
    provider: z.literal('anthropic'),
    model: z.string().min(1),
    apiKey: SecretRef,
    baseUrl: HttpUrl.optional(),
    timeoutMs: z.int().min(100).max(600_000).default(60_000),
    maxOutputTokens: z.int().min(1).max(200_000).default(1024),
  }),
]);
export type ModelTarget = z.infer<typeof ModelTarget>;

const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

/**
 * Whether a target sends data off the platform: anything but echo or an openai_compatible
 * server on a loopback host. A base URL that does not parse counts as external (fail closed).
 */
export function isExternalTarget(target: ModelTarget): boolean {
  if (target.provider === 'echo') return false;
  if (target.provider === 'openai_compatible') {
    return !URL.canParse(target.baseUrl) || !LOCAL_HOSTS.has(new URL(target.baseUrl).hostname);
  }
  return true;
}

/** A model's price, USD per million tokens. */
export const ModelPrice = z.strictObject({
  inputUsdPerMTok: z.number().min(0).max(10_000),
  outputUsdPerMTok: z.number().min(0).max(10_000),
});
export type ModelPrice = z.infer<typeof ModelPrice>;

/** A policy's budget: what one run may spend, and caps on the project's day. */
export const PolicyBudget = z.strictObject({
  /** Tokens (input + output, every model step) one run may spend. */
  perRunTokens: z.int().positive().optional(),
  /** USD one run may spend, at the policy's prices. */
  perRunUsd: z.number().positive().optional(),
  /** Tool calls one run may make (0: none). */
  perRunToolCalls: z.int().min(0).optional(),
  /**
   * Milliseconds from the run's acceptance after which it starts no model step or tool call
   * (and a model call in flight is cut off when it runs out). The runtime contract's
   * `timeouts.runMs` is the run's deadline as a whole (queues and delivery included); this
   * bounds only the spending part, so it is meant to be shorter.
   */
  perRunWallMs: z.int().min(100).max(86_400_000).optional(),
  /** The project's day spend (USD, UTC day) past which runs of this policy are refused. */
  dailyUsd: z.number().positive().optional(),
  /** The project's day spend in tokens past which runs of this policy are refused. */
  dailyTokens: z.int().positive().optional(),
});
export type PolicyBudget = z.infer<typeof PolicyBudget>;

/** Policy / Routing: the model route and fallbacks, budget and rate gates, privacy. */
export const PolicyContract = z
  .strictObject({
    modelRoute: z.strictObject({
      primary: ModelTarget,
      fallbacks: z.array(ModelTarget).max(5).default([]),
    }),
    /**
     * Per-run limits, and caps on the project's day totals for runs under this policy (the
     * project contract's `budget` holds the project's own day and month limits; the lower of
     * the two applies). A step is refused when its reservation would pass one.
     */
    budget: PolicyBudget.optional(),
    /**
     * USD per million tokens, by model id (a target's `model`). Every target of a policy
     * under a money budget (its own or the project's) must have a price; `echo` costs nothing.
     */
    prices: z.record(z.string().min(1).max(200), ModelPrice).optional(),
    rate: z
      .strictObject({
        perPeerPerMinute: z.int().positive().default(20),
        perProjectPerMinute: z.int().positive().default(600),
      })
      .prefault({}),
    privacy: z
      .strictObject({
        redactPii: z.array(PiiClass).default([]),
        allowExternalProviders: z.boolean().default(false),
        /**
         * `false` keeps message text out of Postgres once a run has ended: its input, output,
         * checkpoints, tool arguments and sent answer rows are blanked in the transaction
         * that completes or fails it (see docs/architecture.md, Privacy). Absent or `true`:
         * transcripts are stored.
         */
        storeTranscripts: z.boolean().optional(),
        /**
         * Which of the project's `dataBoundary.piiClasses` each model of the route may be
         * sent. A target (matched by `model`, and `provider` when given) not listed may see
         * none of them; `echo` never leaves the process and sees everything.
         */
        piiAccess: z
          .array(
            z.strictObject({
              model: z.string().min(1).max(200),
              provider: z.enum(['openai_compatible', 'anthropic']).optional(),
              classes: z.array(PiiClass).min(1, 'needs at least one class'),
            }),
          )
          .max(20)
          .optional(),
      })
      .prefault({}),
  })
  .superRefine((policy, ctx) => {
    if (policy.privacy.allowExternalProviders) return;
    const check = (target: ModelTarget, path: (string | number)[]) => {
      // A base URL that does not parse is already reported at its own field.
      if (target.provider === 'openai_compatible' && !isWellFormed(HttpUrl, target.baseUrl)) return;
      if (!isExternalTarget(target)) return;
      ctx.addIssue({
        code: 'custom',
        path,
        message: `provider "${target.provider}" sends data off the platform; set privacy.allowExternalProviders: true to allow it`,
      });
    };
    check(policy.modelRoute.primary, ['modelRoute', 'primary']);
    policy.modelRoute.fallbacks.forEach((target, i) =>
      check(target, ['modelRoute', 'fallbacks', i]),
    );
  });
export type PolicyContract = z.infer<typeof PolicyContract>;
