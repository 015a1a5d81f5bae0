/** An attribution line a mail client puts above the message it quotes (`On … wrote:`). */
const ATTRIBUTION =
  /^(On\s.+\swrote:|Le\s.+\sa écrit\s?:|Am\s.+\sschrieb\s.+:|El\s.+\sescribió:)\s*$/;
/** Outlook's divider above the message it quotes, which is not `>`-prefixed. */
const OUTLOOK_DIVIDER =
  /^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine)\s*-{2,}\s*$/i;

/**
 * The text of a reply without the history it quotes, where that is safe: a trailing block of
 * `>` lines (with the attribution line above it, also when the client wrapped it onto two
 * lines), or everything below Outlook's "Original Message" divider. Quotes between the
 * sender's own lines (an inline answer) are kept, as is everything when nothing but the quote
 * would be left. Line endings become `\n`; the end is trimmed.
 */
export function stripQuotedReply(text: string): string {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let cut = lines.length;
  // A trailing quote: walk up over `>` lines and blank lines.
  let i = lines.length - 1;
  while (i >= 0 && (lines[i]!.trim() === '' || lines[i]!.startsWith('>'))) i -= 1;
  const quoted = lines.slice(i + 1).some((l) => l.startsWith('>'));
  if (quoted) {
    cut = i + 1;
    // The attribution line (or the two a client wrapped it into) above the quote.
    const one = lines[i]?.trim() ?? '';
    const two = `${lines[i - 1]?.trim() ?? ''} ${one}`;
    if (ATTRIBUTION.test(one)) cut = i;
    else if (i >= 1 && ATTRIBUTION.test(two)) cut = i - 1;
  }
  const divider = lines.findIndex((l) => OUTLOOK_DIVIDER.test(l));
  if (divider !== -1 && divider < cut) cut = divider;
  const kept = lines.slice(0, cut).join('\n').trim();
  return kept === '' ? lines.join('\n').trim() : kept;
}
