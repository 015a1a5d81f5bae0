import type { KnownBlock } from '@slack/web-api';
import { z } from 'zod';
import { parseContract } from '../../contracts/formatIssues.ts';
import type { ApprovalPrompt, ApproverAnswer } from '../ChannelPlugin.ts';

/** A button's `value`: `ap:<approval id>:y` approves, `…:n` rejects. */
const BUTTON_VALUE = /^ap:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):([yn])$/;

/** Slack shows at most 3 000 characters in a section's text. */
const SECTION_TEXT_MAX = 3000;

/**
 * An approval prompt as Block Kit: the text in a `plain_text` section (nothing in it is
 * markup, so no `<!channel>` or link can hide in it) and an `actions` block with a button per
 * decision offered; each button's `value` names the approval and the decision.
 */
export function slackApprovalBlocks(prompt: ApprovalPrompt): KnownBlock[] {
  const text =
    prompt.text.length > SECTION_TEXT_MAX
      ? `${prompt.text.slice(0, SECTION_TEXT_MAX - 1)}…`
      : prompt.text;
  return [
    { type: 'section', text: { type: 'plain_text', text, emoji: false } },
    {
      type: 'actions',
      block_id: `approval:${prompt.approvalId}`,
      elements: prompt.buttons.map((decision) => ({
        type: 'button' as const,
        action_id: `approval_${decision}`,
        text: { type: 'plain_text' as const, text: decision === 'approved' ? 'Approve' : 'Reject' },
        style: decision === 'approved' ? ('primary' as const) : ('danger' as const),
        value: `ap:${prompt.approvalId.toLowerCase()}:${decision === 'approved' ? 'y' : 'n'}`,
      })),
    },
  ];
}

// Loose: Slack adds fields to interaction payloads without notice.
const BlockActions = z.looseObject({
  type: z.literal('block_actions'),
  user: z.looseObject({ id: z.string().min(1).max(200) }),
  trigger_id: z.string().optional(),
  actions: z.array(
    z.looseObject({ value: z.string().optional(), action_ts: z.string().optional() }),
  ),
});

/** The JSON a Slack interactivity request carries (a `block_actions` press, a shortcut, ...). */
export const SlackInteraction = z.looseObject({ type: z.string() });

/**
 * Reads a Slack interaction payload (the JSON of an interactivity request's `payload` field)
 * as a button press: who pressed (`slack:<user id>`) and which approval button, `action`
 * null when the button is not one of {@link slackApprovalBlocks}'. Null for any other
 * interaction (a shortcut, a modal submission). Throws {@link ContractViolationError} naming
 * the field when a `block_actions` payload is malformed.
 */
export function readSlackInteraction(payload: unknown): ApproverAnswer | null {
  const interaction = parseContract(SlackInteraction, payload);
  if (interaction.type !== 'block_actions') return null;
  const press = parseContract(BlockActions, interaction);
  const action = press.actions[0];
  const match = BUTTON_VALUE.exec(action?.value ?? '');
  return {
    answerId: action?.action_ts ?? press.trigger_id ?? '',
    decidedBy: `slack:${press.user.id}`,
    action: match
      ? { approvalId: match[1]!, decision: match[2] === 'y' ? 'approved' : 'rejected' }
      : null,
  };
}
