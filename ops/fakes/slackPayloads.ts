import { signSlackRequest } from '../../pipeline/channels/slack/verifySlackSignature.ts';

/** The bot user the test app is installed as (`authorizations[0].user_id`). */
export const SLACK_BOT_USER = 'U0LAN0Z89';

/**
 * Slack's `url_verification` request, as the Events API documentation shows it: sent once
 * when the Request URL is saved; the challenge must come back.
 */
export function slackUrlVerification(
  challenge = '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P',
) {
  return { token: 'Jhj5dZrVaK7ZwHHjRyZWjbDl', challenge, type: 'url_verification' };
}

/** What {@link slackEventCallback} builds an event from. */
export type SlackEventSpec = {
  eventId: string;
  /** `app_mention` in a channel, or a direct message (`message` with `channel_type: im`). */
  kind: 'app_mention' | 'im';
  text: string;
  /** Default `U061F7AUR` (the documentation's user). */
  user?: string;
  /** Default `C0LAN2Q65` for a mention, `D024BE91L` for a direct message. */
  channel?: string;
  /** The message's own `ts`. Default from the event id, unique per event. */
  ts?: string;
  /** Set when the message is a reply in a thread. */
  threadTs?: string;
  /** Extra fields of the inner event (`subtype`, `bot_id`, ...). */
  extra?: Record<string, unknown>;
};

/**
 * An Events API `event_callback` envelope shaped like the ones in Slack's documentation for
 * `app_mention` and `message.im`: `token`, `team_id`, `api_app_id`, the inner `event` (with
 * `event_ts`, `client_msg_id`, `team`, `blocks`), `event_id`, `event_time`, `authorizations`
 * naming the bot user, `is_ext_shared_channel` and `event_context`.
 */
export function slackEventCallback(spec: SlackEventSpec): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  const ts = spec.ts ?? `${now}.${String(hash(spec.eventId)).padStart(6, '0')}`;
  const channel = spec.channel ?? (spec.kind === 'im' ? 'D024BE91L' : 'C0LAN2Q65');
  const text =
    spec.kind === 'app_mention' && !spec.text.includes('<@')
      ? `<@${SLACK_BOT_USER}> ${spec.text}`
      : spec.text;
  return {
    token: 'ZZZZZZWSxiZZZ2yIvs3peJ',
    team_id: 'T061EG9R6',
    context_team_id: 'T061EG9R6',
    context_enterprise_id: null,
    api_app_id: 'A0MDYCDME',
    event: {
      type: spec.kind === 'im' ? 'message' : 'app_mention',
      client_msg_id: '5bc2f1e6-0000-4000-8000-' + String(hash(spec.eventId)).padStart(12, '0'),
      user: spec.user ?? 'U061F7AUR',
      text,
      blocks: [
        {
          type: 'rich_text',
          block_id: 'eGV',
          elements: [{ type: 'rich_text_section', elements: [{ type: 'text', text: spec.text }] }],
        },
      ],
      team: 'T061EG9R6',
      ts,
      ...(spec.threadTs === undefined
        ? {}
        : { thread_ts: spec.threadTs, parent_user_id: 'U061F7AUR' }),
      channel,
      event_ts: ts,
      ...(spec.kind === 'im' ? { channel_type: 'im' } : {}),
      ...spec.extra,
    },
    type: 'event_callback',
    event_id: spec.eventId,
    event_time: now,
    authorizations: [
      {
        enterprise_id: null,
        team_id: 'T061EG9R6',
        user_id: SLACK_BOT_USER,
        is_bot: true,
        is_enterprise_install: false,
      },
    ],
    is_ext_shared_channel: false,
    event_context: '4-eyJldCI6ImFwcF9tZW50aW9uIiwidGlkIjoiVDA2MUVHOVI2IiwiYWlkIjoiQTBNRFlDRE1FIn0',
  };
}

/** The headers Slack signs a request with, for this body, at `timestampS` (default now). */
export function slackHeaders(
  body: string,
  signingSecret: string,
  timestampS = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const timestamp = String(timestampS);
  return {
    'content-type': 'application/json',
    'x-slack-request-timestamp': timestamp,
    'x-slack-signature': signSlackRequest(body, signingSecret, timestamp),
  };
}

function hash(text: string): number {
  let h = 0;
  for (const ch of text) h = (h * 31 + ch.charCodeAt(0)) % 1_000_000;
  return h;
}

/**
 * A `block_actions` interaction as Slack posts it to the Interactivity Request URL when a
 * button is pressed: a form body with one field, `payload`, holding the JSON (user, team,
 * container, channel, `response_url`, `trigger_id` and the pressed action with its `value`).
 */
export function slackButtonPress({ userId, value }: { userId: string; value: string }): string {
  const payload = {
    type: 'block_actions',
    user: { id: userId, username: 'amy', name: 'amy', team_id: 'T061EG9R6' },
    api_app_id: 'A0MDYCDME',
    token: 'Shh_its_a_seekrit',
    container: {
      type: 'message',
      message_ts: '1548426417.000100',
      channel_id: 'D0CA5',
      is_ephemeral: false,
    },
    trigger_id: '12466734323.1395872398.803a0bc887a14d10d2c447fce8b6703c',
    team: { id: 'T061EG9R6', domain: 'acme-creamery' },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: 'D0CA5', name: 'directmessage' },
    response_url: 'https://hooks.slack.com/actions/T061EG9R6/1509734234/abcdef',
    actions: [
      {
        type: 'button',
        block_id: 'approval',
        action_id: value.endsWith(':y') ? 'approval_approved' : 'approval_rejected',
        text: { type: 'plain_text', text: value.endsWith(':y') ? 'Approve' : 'Reject' },
        value,
        action_ts: '1548426417.840180',
      },
    ],
  };
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}
