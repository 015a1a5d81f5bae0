import { parseContract } from '../../contracts/formatIssues.ts';
import { TelegramUpdate } from './normalizeTelegramUpdate.ts';

/** What an approval button says: `ap:<approval id>:y` approves, `…:n` rejects. */
const CALLBACK_DATA = /^ap:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):([yn])$/;

/**
 * The `callback_data` of an approval button: `ap:<approval id>:y|n`, 41 bytes, inside
 * Telegram's 64.
 */
export function approvalCallbackData(approvalId: string, decision: 'approved' | 'rejected') {
  return `ap:${approvalId.toLowerCase()}:${decision === 'approved' ? 'y' : 'n'}`;
}

/** A button press read from an Update: who pressed, and which approval button (null: not one). */
export type ApprovalCallback = {
  /** The `callback_query.id`, to answer with `answerCallbackQuery`. */
  callbackQueryId: string;
  /** The Telegram user id of who pressed it (never a chat id). */
  fromId: string;
  action: { approvalId: string; decision: 'approved' | 'rejected' } | null;
};

/**
 * Reads a Telegram webhook body as a button press. Null when the Update carries no
 * `callback_query` (a message, an edit, ...); otherwise the press, its `action` null when the
 * data is not an approval button's. Throws {@link ContractViolationError} naming the bad
 * field when the body is not an Update.
 */
export function readApprovalCallback(body: unknown): ApprovalCallback | null {
  const query = parseContract(TelegramUpdate, body).callback_query;
  if (query === undefined) return null;
  const match = CALLBACK_DATA.exec(query.data ?? '');
  return {
    callbackQueryId: query.id,
    fromId: String(query.from.id),
    action: match
      ? { approvalId: match[1]!, decision: match[2] === 'y' ? 'approved' : 'rejected' }
      : null,
  };
}
