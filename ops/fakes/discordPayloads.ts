import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { snowflake } from './discordRestServer.ts';

/** The test application (its id, and the bot user's, which Discord makes the same). */
export const DISCORD_APP_ID = '1100000000000000001';
export const DISCORD_BOT_USER = '1100000000000000001';
export const DISCORD_GUILD = '1200000000000000001';
export const DISCORD_CHANNEL = '1200000000000000002';

/** An Ed25519 key pair as a Discord application has: the public key as the portal shows it. */
export function discordKeyPair(): { publicKey: string; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return { publicKey: der.subarray(-32).toString('hex'), privateKey };
}

/** The headers Discord signs an interaction request with, for this body, at `timestampS`. */
export function discordHeaders(
  body: string,
  privateKey: KeyObject,
  timestampS = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const timestamp = String(timestampS);
  return {
    'content-type': 'application/json',
    'x-signature-timestamp': timestamp,
    'x-signature-ed25519': sign(null, Buffer.from(timestamp + body), privateKey).toString('hex'),
  };
}

/** What {@link messageCreate} builds a message from. */
export type DiscordMessageSpec = {
  id?: string;
  content: string;
  /** Set for a guild message; a DM has none. */
  guildId?: string;
  channelId?: string;
  author?: { id: string; username?: string; bot?: boolean };
  /** Users mentioned (the bot's id for a mention of it). */
  mentions?: string[];
  attachments?: { filename: string; size: number; contentType?: string }[];
  type?: number;
  extra?: Record<string, unknown>;
};

/**
 * A MESSAGE_CREATE dispatch's `d` shaped like the message object in Discord's documentation:
 * id, channel_id, author (with global_name, avatar, discriminator, public_flags), content,
 * timestamp, tts, mention_everyone, mentions, mention_roles, attachments (id, filename, size,
 * url, proxy_url, content_type), embeds, nonce, pinned, type, flags, components, and in a guild
 * `guild_id` and `member`.
 */
export function messageCreate(spec: DiscordMessageSpec): Record<string, unknown> {
  const id = spec.id ?? snowflake();
  const channelId = spec.channelId ?? (spec.guildId ? DISCORD_CHANNEL : '1300000000000000009');
  const author = spec.author ?? { id: '1400000000000000001', username: 'nelly' };
  return {
    id,
    channel_id: channelId,
    author: {
      id: author.id,
      username: author.username ?? 'nelly',
      global_name: author.username ?? 'Nelly',
      avatar: '8342729096ea3675442027381ff50dfe',
      discriminator: '0',
      public_flags: 0,
      flags: 0,
      ...(author.bot ? { bot: true } : {}),
    },
    content: spec.content,
    timestamp: new Date().toISOString(),
    edited_timestamp: null,
    tts: false,
    mention_everyone: false,
    mentions: (spec.mentions ?? []).map((m) => ({
      id: m,
      username: m === DISCORD_BOT_USER ? 'awooop' : 'someone',
      discriminator: '0',
      avatar: null,
      ...(m === DISCORD_BOT_USER ? { bot: true } : {}),
    })),
    mention_roles: [],
    attachments: (spec.attachments ?? []).map((a) => {
      const aid = snowflake();
      return {
        id: aid,
        filename: a.filename,
        size: a.size,
        url: `https://cdn.discordapp.com/attachments/${channelId}/${aid}/${a.filename}`,
        proxy_url: `https://media.discordapp.net/attachments/${channelId}/${aid}/${a.filename}`,
        ...(a.contentType ? { content_type: a.contentType } : {}),
      };
    }),
    embeds: [],
    nonce: String(Date.now()),
    pinned: false,
    type: spec.type ?? 0,
    flags: 0,
    components: [],
    ...(spec.guildId
      ? {
          guild_id: spec.guildId,
          member: {
            roles: [],
            joined_at: '2024-01-01T00:00:00.000000+00:00',
            deaf: false,
            mute: false,
            flags: 0,
          },
        }
      : {}),
    ...spec.extra,
  };
}

/**
 * A message component interaction (type 3) as Discord posts it to the Interactions endpoint
 * when a button is pressed in a DM: id, application_id, type, data (custom_id,
 * component_type 2), channel_id and channel, user, token, version, message (the prompt),
 * app_permissions, locale, entitlements, authorizing_integration_owners and context.
 */
export function buttonPress({
  userId,
  customId,
  channelId = '1300000000000000077',
  messageId = '1300000000000000078',
  applicationId = DISCORD_APP_ID,
}: {
  userId: string;
  customId: string;
  channelId?: string;
  messageId?: string;
  applicationId?: string;
}): Record<string, unknown> {
  return {
    app_permissions: '442368',
    application_id: applicationId,
    authorizing_integration_owners: { '0': DISCORD_GUILD },
    channel: { id: channelId, type: 1, flags: 0, last_message_id: messageId, recipients: [] },
    channel_id: channelId,
    context: 1,
    data: { component_type: 2, custom_id: customId, id: 1 },
    entitlement_sku_ids: [],
    entitlements: [],
    id: snowflake(),
    locale: 'en-US',
    message: {
      id: messageId,
      channel_id: channelId,
      type: 0,
      content: 'Approval needed',
      author: { id: DISCORD_BOT_USER, username: 'awooop', bot: true, discriminator: '0' },
      components: [],
      embeds: [],
      attachments: [],
      mentions: [],
      timestamp: new Date().toISOString(),
      flags: 0,
    },
    token: `aW50ZXJhY3Rpb246${snowflake()}OnRva2Vu`,
    type: 3,
    user: { id: userId, username: 'approver', discriminator: '0', global_name: 'Approver' },
    version: 1,
  };
}

/** A PING (type 1), as Discord sends when the Interactions Endpoint URL is saved. */
export function interactionPing(applicationId = DISCORD_APP_ID): Record<string, unknown> {
  return {
    app_permissions: '0',
    application_id: applicationId,
    entitlements: [],
    id: snowflake(),
    token: `aW50ZXJhY3Rpb246${snowflake()}OnBpbmc`,
    type: 1,
    user: { id: '1400000000000000001', username: 'discord' },
    version: 1,
  };
}
