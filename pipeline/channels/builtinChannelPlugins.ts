import { apiPlugin } from './api/apiPlugin.ts';
import type { AnyChannelPlugin } from './ChannelPlugin.ts';
import { discordPlugin } from './discord/discordPlugin.ts';
import { emailPlugin } from './email/emailPlugin.ts';
import { linePlugin } from './line/linePlugin.ts';
import { slackPlugin } from './slack/slackPlugin.ts';
import { telegramPlugin } from './telegram/telegramPlugin.ts';

/** The channels AwoooP ships: what `ops/` registers in every process. */
export const BUILTIN_CHANNEL_PLUGINS: readonly AnyChannelPlugin[] = [
  telegramPlugin,
  linePlugin,
  slackPlugin,
  discordPlugin,
  emailPlugin,
  apiPlugin,
];
