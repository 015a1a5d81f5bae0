/**
 * A Telegram `Update` carrying a private text message, shaped as the Bot API posts it to a
 * webhook (sender, chat, date, text). Chats rotate over `chats` ids, as a bot's many users do:
 * one chat's updates would all queue on its conversation lock.
 */
export function telegramBody(updateId: number, chats = 5000): string {
  const chatId = 100_000 + (updateId % chats);
  const person = { first_name: 'Ada', last_name: 'Lovelace', username: `user${chatId}` };
  return JSON.stringify({
    update_id: updateId,
    message: {
      message_id: 1000 + updateId,
      from: { id: chatId, is_bot: false, ...person, language_code: 'en' },
      chat: { id: chatId, ...person, type: 'private' },
      date: Math.floor(Date.now() / 1000),
      text: `bench message ${updateId}: where is my order? Please answer briefly.`,
    },
  });
}
