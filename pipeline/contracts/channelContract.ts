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
  // Email carries megabytes: one answer is one message, however long the model's text.
  email: null,
  api: null,
} as const;

const common = {
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
      parseMode: z.enum(['MarkdownV2', 'HTML', 'plain']).default('HTML'),
      ...common,
    }),
    z.strictObject({
      type: z.literal('line'),
      channelSecret: SecretRef,
      channelAccessToken: SecretRef,
      apiBaseUrl: HttpUrl.optional(),
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
