import { z } from 'zod';
import { HttpUrl, SecretRef } from './common.ts';
import { emailChannelFields, refineEmailChannel } from './emailChannel.ts';

/**
 * The most characters one message may carry on each channel (null: no limit), in UTF-16 code
 * units as the channel counts them: Telegram on the text after entity parsing.
 */
export const CHANNEL_TEXT_LIMITS = {
  telegram: 4096,
  line: 5000,
  slack: 4000,
  discord: 2000,
  // Email carries megabytes: one answer is one message, however long the model's text.
  email: null,
  api: null,
} as const;

/** An https:// origin Telegram can call: scheme and host (and port), nothing after. */
const PublicBaseUrl = z
  .url({ protocol: /^https$/, error: 'must be an https:// URL' })
  .refine((u) => /^https:\/\/[^/?#]+\/?$/.test(u), 'must be a base URL: no path, query or fragment')
  .transform((u) => u.replace(/\/$/, ''));

/**
 * What one channel account takes in, checked at ingress before anything is written: a rate
 * for the account, for one sender (a user) and for one conversation (a chat). Each takes a
 * burst of a tenth of a minute's worth (at least 5, at most the limit), then the steady rate.
 */
export const ChannelLimits = z.strictObject({
  messagesPerMinute: z.int().min(1).max(1_000_000).optional(),
  perSenderPerMinute: z.int().min(1).max(1_000_000).optional(),
  perConversationPerMinute: z.int().min(1).max(1_000_000).optional(),
});
export type ChannelLimits = z.infer<typeof ChannelLimits>;

const common = {
  /** Admission limits of the account (absent: only the project's and the platform's). */
  limits: ChannelLimits.optional(),
  formatting: z.strictObject({ maxChunkChars: z.int().min(1).optional() }).prefault({}),
  progress: z
    .strictObject({
      typingIndicator: z.boolean().default(true),
      statusAfterMs: z.int().min(0).max(600_000).default(8000),
      statusText: z.string().min(1).max(200).default('Working on it…'),
    })
    .prefault({}),
  failureMessage: z
    .string()
    .min(1)
    .max(500)
    .default('Sorry, I could not finish that. The team has been told.'),
  approvals: z.boolean().default(false),
  /**
   * Caps on what an inbound message may carry besides text, kept as references
   * ({@link capAttachments}): past `maxAttachments` or over `maxBytes`, an attachment is only
   * mentioned, never fetched.
   */
  media: z
    .strictObject({
      maxAttachments: z.int().min(0).max(100).default(10),
      maxBytes: z.int().min(0).max(1_000_000_000).default(20_000_000),
    })
    .prefault({}),
};

/** Communication / Channel: one channel account, its credentials (as refs), formatting, progress. */
export const ChannelContract = z
  .discriminatedUnion('type', [
    z.strictObject({
      type: z.literal('telegram'),
      botToken: SecretRef,
      webhookSecret: SecretRef,
      apiRoot: HttpUrl.optional(),
      /**
       * Whether the ChannelManager registers the webhook with Telegram (`setWebhook` with the
       * route's URL under `publicUrl` and the webhook secret) each time the account starts.
       */
      webhook: z
        .strictObject({
          register: z.boolean(),
          /** The public HTTPS base that reaches the web process (no path, query or fragment). */
          publicUrl: PublicBaseUrl,
        })
        .optional(),
      parseMode: z.enum(['MarkdownV2', 'HTML', 'plain']).default('HTML'),
      ...common,
    }),
    z.strictObject({
      type: z.literal('line'),
      channelSecret: SecretRef,
      channelAccessToken: SecretRef,
      apiBaseUrl: HttpUrl.optional(),
      /**
       * Whether "Webhook redelivery" is on in the LINE console. Only then does LINE deliver a
       * refused webhook again, so only then is a message past a limit refused; without it,
       * such a message is accepted and its run delayed instead, since LINE would drop it.
       */
      redelivery: z.boolean().optional(),
      ...common,
    }),
    z.strictObject({
      type: z.literal('slack'),
      /** The app's signing secret: checks the `v0` signature of every Events API request. */
      signingSecret: SecretRef,
      /** The bot user OAuth token (`xoxb-…`) the answers are posted with. */
      botToken: SecretRef,
      /** Web API root, `https://slack.com/api/` unless set (a local fake in tests). */
      apiBaseUrl: HttpUrl.optional(),
      ...common,
    }),
    z.strictObject({
      type: z.literal('discord'),
      /** The bot's token: the Gateway connection and every REST call are made with it. */
      botToken: SecretRef,
      /** The application's id (a snowflake): an interaction naming another one is refused. */
      applicationId: z.string().regex(/^\d{15,25}$/, 'must be a Discord snowflake (digits)'),
      /**
       * The application's public key (64 hex characters): checks the Ed25519 signature of
       * every request to the Interactions endpoint.
       */
      publicKey: z
        .string()
        .regex(/^[0-9a-fA-F]{64}$/, 'must be the 64 hex characters of an Ed25519 public key'),
      /** REST API root without its version, `https://discord.com/api` unless set (a fake in tests). */
      apiBaseUrl: HttpUrl.optional(),
      /** The Gateway's WebSocket URL, else the one `GET /gateway/bot` names (a fake in tests). */
      gatewayUrl: z.url({ protocol: /^wss?$/, error: 'must be a ws:// or wss:// URL' }).optional(),
      ...common,
    }),
    // `approvals` comes after `common`: an email account may not ask approvers.
    z.strictObject({ ...common, ...emailChannelFields }),
    z.strictObject({ type: z.literal('api'), callbackUrl: HttpUrl.optional(), ...common }),
  ])
  .superRefine((channel, ctx) => {
    if (channel.type === 'email') refineEmailChannel(channel, ctx);
    const limit = CHANNEL_TEXT_LIMITS[channel.type];
    const chunk = channel.formatting.maxChunkChars;
    if (limit !== null && chunk !== undefined && chunk > limit) {
      ctx.addIssue({
        code: 'custom',
        path: ['formatting', 'maxChunkChars'],
        message: `${channel.type} allows at most ${limit} characters a message`,
      });
    }
  });
export type ChannelContract = z.infer<typeof ChannelContract>;
