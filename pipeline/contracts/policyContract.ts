import { z } from 'zod';
import { HttpUrl, isWellFormed, PiiClass, SecretRef } from './common.ts';

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

/** Policy / Routing: the model route and fallbacks, budget and rate gates, privacy. */
export const PolicyContract = z
  .strictObject({
    modelRoute: z.strictObject({
      primary: ModelTarget,
      fallbacks: z.array(ModelTarget).max(5).default([]),
    }),
    /** Refused by apply (not supported yet); read only in revisions stored before. */
    budget: z
      .strictObject({
        perRunUsd: z.number().positive().optional(),
        dailyUsd: z.number().positive().optional(),
        dailyTokens: z.int().positive().optional(),
      })
      .optional(),
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
        /** Refused by apply (not supported yet); read only in revisions stored before. */
        storeTranscripts: z.boolean().optional(),
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
