import { z } from 'zod';
import { parseContract } from '../../contracts/formatIssues.ts';
import { ContractViolationError } from '../../errors.ts';
import type { ApprovalPrompt, ApproverAnswer, InboundResult } from '../ChannelPlugin.ts';

/** A button's `custom_id`: `ap:<approval id>:y` approves, `…:n` rejects. */
const CUSTOM_ID = /^ap:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):([yn])$/;

/** Interaction types (Discord's `InteractionType`) and the callback types answering them. */
const PING = 1;
const MESSAGE_COMPONENT = 3;
const AUTOCOMPLETE = 4;
const PONG = { type: 1 } as const;
/** DEFERRED_UPDATE_MESSAGE: the press is taken, the message stays as it is. */
const DEFERRED_UPDATE = { type: 6 } as const;

/** Loose: Discord adds fields to interactions without notice. */
const User = z.looseObject({ id: z.string().min(1).max(30), bot: z.boolean().optional() });
export const DiscordInteraction = z.looseObject({
  id: z.string().min(1).max(30),
  application_id: z.string().min(1).max(30),
  type: z.int(),
  token: z.string().min(1).optional(),
  channel_id: z.string().min(1).max(30).optional(),
  /** In a guild: who pressed, as a member. */
  member: z.looseObject({ user: User }).optional(),
  /** In a DM: who pressed. */
  user: User.optional(),
  message: z.looseObject({ id: z.string().min(1).max(30) }).optional(),
  data: z.looseObject({ custom_id: z.string().max(100).optional() }).optional(),
});
export type DiscordInteraction = z.infer<typeof DiscordInteraction>;

/** Discord's button styles: Success (green) for Approve, Danger (red) for Reject. */
const SUCCESS = 3;
const DANGER = 4;

/**
 * An approval prompt's buttons as a Discord action row: one button per decision offered, its
 * `custom_id` naming the approval and the decision (at most 100 characters, as Discord allows).
 */
export function discordApprovalComponents(prompt: ApprovalPrompt): Record<string, unknown>[] {
  return [
    {
      type: 1,
      components: prompt.buttons.map((decision) => ({
        type: 2,
        style: decision === 'approved' ? SUCCESS : DANGER,
        label: decision === 'approved' ? 'Approve' : 'Reject',
        custom_id: `ap:${prompt.approvalId.toLowerCase()}:${decision === 'approved' ? 'y' : 'n'}`,
      })),
    },
  ];
}

/**
 * Reads a verified Interactions request. A PING is answered PONG (`{type:1}`). A button press
 * (a message component) on an account that asks approvers is an {@link ApproverAnswer}: who
 * pressed (`discord:<user id>`, from `member.user` in a guild or `user` in a DM), the approval
 * and decision from the button's `custom_id` (`action` null for any other button), with the
 * DM channel and prompt message as its `answerId` (`<channel id>:<message id>`, what
 * `acknowledge` replies to), answered with a deferred update (`{type:6}`): Discord stops the
 * button's spinner and leaves the message alone. A press elsewhere is answered the same and
 * acts on nothing. Any other interaction (a slash command, a modal) is answered with a
 * message only its user sees saying the app takes messages, and an autocomplete with no
 * choices; none writes anything. Throws {@link ContractViolationError} naming the field when
 * the body is not an interaction or names another application.
 */
export function readDiscordInteraction(
  body: unknown,
  { applicationId, approvals }: { applicationId: string; approvals: boolean },
): InboundResult {
  const interaction = parseContract(DiscordInteraction, body);
  if (interaction.application_id !== applicationId) {
    throw new ContractViolationError([
      'application_id: the interaction is for another application than this account',
    ]);
  }
  if (interaction.type === PING) return { kind: 'answer', body: PONG };
  if (interaction.type === AUTOCOMPLETE) {
    return { kind: 'answer', body: { type: 8, data: { choices: [] } } };
  }
  if (interaction.type !== MESSAGE_COMPONENT) {
    return {
      kind: 'answer',
      body: {
        type: 4,
        data: { content: 'This app answers messages; it has no commands.', flags: 64 },
      },
    };
  }
  const presser = interaction.member?.user ?? interaction.user;
  if (!approvals || presser === undefined) return { kind: 'answer', body: DEFERRED_UPDATE };
  const match = CUSTOM_ID.exec(interaction.data?.custom_id ?? '');
  const answer: ApproverAnswer = {
    answerId: `${interaction.channel_id ?? ''}:${interaction.message?.id ?? ''}`,
    decidedBy: `discord:${presser.id}`,
    action: match
      ? { approvalId: match[1]!, decision: match[2] === 'y' ? 'approved' : 'rejected' }
      : null,
  };
  return { kind: 'approval', answer, body: DEFERRED_UPDATE };
}
