import type { PiiClass } from '../contracts/common.ts';

const EMAIL =
  /(?<![\w.%+/-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,63}(?![\w-])/g;

/** 13 to 19 digits, each group separated by at most one space or dash. */
const CARD = /(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])/g;

/** US SSN, without the number ranges the SSA never issues (000, 666, 9xx; 00; 0000). */
const SSN = /(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])/g;

/**
 * The conservative generic national id: an id-looking value (5 or more digits, letters
 * allowed) right after a label that says it is one. The label is kept.
 */
const LABELLED_ID =
  /(?<label>\b(?:ssn|social security (?:number|no\.?)|national (?:id|identity|identification)(?: (?:card|number|no\.?))*|passport (?:number|no\.?)|(?:personal |citizen )?id(?:entity)? (?:card )?(?:number|no\.?)|tax (?:id|identification number)|citizen (?:id|number))(?:\s+is)?\s*[:#]?\s*)(?<value>[A-Z0-9](?:[A-Z0-9]|[ -](?=\d)){4,24})(?![\w])/gi;

/** Digit runs with spaces, dots, dashes and parentheses between them, optionally after `+`. */
const PHONE_CANDIDATE =
  /(?<![\w+./:-])(?:\+|\(\+?)?\d(?:\d|[ .-]\(?(?=\d)|\)[ .-]?(?=\d)|\((?=\d))*(?![\w/:-])/g;

/** Whether a digit string passes the Luhn checksum. */
function passesLuhn(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i += 1) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/**
 * A payment card: 13–19 digits, Luhn-valid, and starting 2–6 (the issuer ranges of the card
 * networks), which keeps millisecond timestamps and most order numbers out.
 */
function isCard(candidate: string): boolean {
  const digits = candidate.replace(/\D/g, '');
  return digits.length >= 13 && digits.length <= 19 && /^[2-6]/.test(digits) && passesLuhn(digits);
}

/** Whether a phone-shaped run of digits is more likely a phone number than anything else. */
function isPhone(candidate: string): boolean {
  const digits = candidate.replace(/\D/g, '');
  if (digits.length < 8 || digits.length > 15) return false;
  const groups = candidate.split(/\D+/).filter((g) => g !== '');
  if (/^\(?\+/.test(candidate)) return true;
  // Dates, IPv4 addresses, year ranges, decimals, thousands separators, SSNs and cards.
  if (/(?:^|\D)(?:19|20)\d\d[-./]\d{1,2}[-./]\d{1,2}(?:\D|$)/.test(candidate)) return false;
  if (/(?:^|\D)\d{1,2}[-./]\d{1,2}[-./](?:19|20)\d\d(?:\D|$)/.test(candidate)) return false;
  if (/^\d{1,3}(?:\.\d{1,3}){3}$/.test(candidate)) return false;
  if (/^(?:19|20)\d\d ?- ?(?:19|20)\d\d$/.test(candidate)) return false;
  if (/^\d+\.\d+$/.test(candidate)) return false;
  if (/^[1-9]\d{0,2}(?:([ .,])\d{3})(?:\1\d{3})*$/.test(candidate)) return false;
  if (/^\d{3}-\d{2}-\d{4}$/.test(candidate)) return false;
  if (isCard(candidate)) return false;
  const trunk = digits.startsWith('0');
  if (groups.length === 1) return trunk && digits.length >= 9 && digits.length <= 12;
  if (candidate.startsWith('(')) return true;
  return groups.length >= 3 || trunk;
}

interface Rule {
  readonly cls: PiiClass;
  readonly apply: (text: string) => { text: string; redactions: number };
}

function replaceAll(
  text: string,
  regex: RegExp,
  replace: (match: RegExpExecArray) => string | null,
): { text: string; redactions: number } {
  let out = '';
  let last = 0;
  let redactions = 0;
  for (const match of text.matchAll(regex)) {
    const replacement = replace(match);
    if (replacement === null) continue;
    out += text.slice(last, match.index) + replacement;
    last = match.index + match[0].length;
    redactions += 1;
  }
  return { text: out + text.slice(last), redactions };
}

// Fixed order whatever order the policy lists its classes in: cards and national ids before
// phones, so a number that is one of those is labelled as such and not as a phone.
const RULES: readonly Rule[] = [
  { cls: 'email', apply: (text) => replaceAll(text, EMAIL, () => '[EMAIL]') },
  {
    cls: 'payment_card',
    apply: (text) => replaceAll(text, CARD, (m) => (isCard(m[0]) ? '[CARD]' : null)),
  },
  {
    cls: 'national_id',
    apply: (text) => {
      const ssn = replaceAll(text, SSN, () => '[NATIONAL_ID]');
      const labelled = replaceAll(ssn.text, LABELLED_ID, (m) => {
        const value = m.groups?.['value'] ?? '';
        return (value.match(/\d/g)?.length ?? 0) >= 5
          ? `${m.groups?.['label'] ?? ''}[NATIONAL_ID]`
          : null;
      });
      return { text: labelled.text, redactions: ssn.redactions + labelled.redactions };
    },
  },
  {
    cls: 'phone',
    apply: (text) => replaceAll(text, PHONE_CANDIDATE, (m) => (isPhone(m[0]) ? '[PHONE]' : null)),
  },
];

/**
 * Replaces the personal data of the given classes with a placeholder: `email` → `[EMAIL]`,
 * `phone` → `[PHONE]` (8–15 digits: international `+…` numbers, and national formats with
 * separators or a leading trunk `0`; dates, years, IP addresses, decimals and thousands are
 * left alone), `payment_card` → `[CARD]` (13–19 digits, optionally grouped by spaces or
 * dashes, passing Luhn), `national_id` → `[NATIONAL_ID]` (US SSN `ddd-dd-dddd`, and a number
 * that follows a label such as "passport no." or "national ID").
 *
 * `address` and `person_name` cannot be recognised reliably by pattern, so for those classes
 * the text is returned unchanged: they are the seam where a classifier plugs in later. A policy
 * naming them today gets no redaction for them.
 */
export function redactPii(
  text: string,
  classes: readonly PiiClass[],
): { text: string; redactions: number } {
  const wanted = new Set(classes);
  let result = { text, redactions: 0 };
  for (const rule of RULES) {
    if (!wanted.has(rule.cls)) continue;
    const next = rule.apply(result.text);
    result = { text: next.text, redactions: result.redactions + next.redactions };
  }
  return result;
}
