import { describe, expect, it } from 'vitest';
import type { PiiClass } from '../../pipeline/contracts/common.ts';
import { redactPii } from '../../pipeline/sanitize/redactPii.ts';

const ALL: readonly PiiClass[] = [
  'email',
  'phone',
  'address',
  'payment_card',
  'national_id',
  'person_name',
];

describe('redactPii: email', () => {
  it('redacts email addresses, including plus-tags, subdomains and mailto links', () => {
    expect(
      redactPii('Write to jane.doe+news@mail.example.co.uk or mailto:bob@corp.io.', ['email']),
    ).toEqual({ text: 'Write to [EMAIL] or mailto:[EMAIL].', redactions: 2 });
  });

  it('leaves package scopes, versions, bare hosts and URL user names alone', () => {
    const text = 'npm i @types/node; pin foo@1.2.3; ssh root@localhost; https://u@example.com/x';
    expect(redactPii(text, ['email'])).toEqual({ text, redactions: 0 });
  });
});

describe('redactPii: phone', () => {
  it.each([
    '+1 (555) 123-4567',
    '+44 20 7946 0958',
    '+66812345678',
    '(555) 123-4567',
    '555-123-4567',
    '555.123.4567',
    '0812345678',
    '090-1234-5678',
    '01 23 45 67 89',
  ])('redacts the phone number %s', (phone) => {
    expect(redactPii(`Call ${phone}, thanks.`, ['phone'])).toEqual({
      text: 'Call [PHONE], thanks.',
      redactions: 1,
    });
  });

  it.each([
    'in 2024',
    'from 2019-2024',
    'on 2024-01-15',
    'on 15.01.2024',
    'on 2024-01-15 12 people came',
    'host 192.168.100.100',
    'pi is 3.14159265',
    'population 10 000 000',
    'order 12345678',
    'at 1700000000000 ms',
    'version v1.2.3.4',
    'short 555-1234',
    'ratio 1:2345678',
  ])('leaves a number that is not a phone alone: %s', (text) => {
    expect(redactPii(text, ['phone'])).toEqual({ text, redactions: 0 });
  });

  it('does not call an SSN or a card number a phone', () => {
    const text = 'ssn 123-45-6789 card 3782 822463 10005';
    expect(redactPii(text, ['phone'])).toEqual({ text, redactions: 0 });
  });
});

describe('redactPii: payment_card', () => {
  it('redacts a Luhn-valid card, plain or grouped by spaces or dashes', () => {
    expect(
      redactPii('a 4111111111111111 b 5555 5555 5555 4444 c 3782-822463-10005 d', ['payment_card']),
    ).toEqual({ text: 'a [CARD] b [CARD] c [CARD] d', redactions: 3 });
  });

  it('keeps a card-shaped number that fails Luhn', () => {
    const text = 'card 4111 1111 1111 1112 and 4242424242424243';
    expect(redactPii(text, ['payment_card'])).toEqual({ text, redactions: 0 });
  });

  it('keeps Luhn-valid numbers outside the card ranges, such as millisecond timestamps', () => {
    const text = 'at 1700000000004';
    expect(redactPii(text, ['payment_card'])).toEqual({ text, redactions: 0 });
  });
});

describe('redactPii: national_id', () => {
  it('redacts a US SSN but not the ranges never issued', () => {
    expect(
      redactPii('ssn 123-45-6789, not 000-12-3456 or 666-12-3456 or 123-00-4567', ['national_id']),
    ).toEqual({
      text: 'ssn [NATIONAL_ID], not 000-12-3456 or 666-12-3456 or 123-00-4567',
      redactions: 1,
    });
  });

  it('redacts a labelled id number and keeps the label', () => {
    expect(
      redactPii('Passport no. X1234567; national ID: 1-2345-67890-12-3; ID number is 987654321', [
        'national_id',
      ]),
    ).toEqual({
      text: 'Passport no. [NATIONAL_ID]; national ID: [NATIONAL_ID]; ID number is [NATIONAL_ID]',
      redactions: 3,
    });
  });

  it('leaves a label followed by something that is not an id alone', () => {
    const text = 'Your ID number: see the card. Passport no. 12.';
    expect(redactPii(text, ['national_id'])).toEqual({ text, redactions: 0 });
  });
});

describe('redactPii: classes', () => {
  const text = 'Mail a@b.io, call +1 555 123 4567, card 4111-1111-1111-1111, ssn 123-45-6789.';

  it('redacts only the classes asked for', () => {
    expect(redactPii(text, ['email'])).toEqual({
      text: 'Mail [EMAIL], call +1 555 123 4567, card 4111-1111-1111-1111, ssn 123-45-6789.',
      redactions: 1,
    });
    expect(redactPii(text, [])).toEqual({ text, redactions: 0 });
  });

  it('redacts every class it can recognise, whatever order they are listed in', () => {
    const expected = {
      text: 'Mail [EMAIL], call [PHONE], card [CARD], ssn [NATIONAL_ID].',
      redactions: 4,
    };
    expect(redactPii(text, ALL)).toEqual(expected);
    expect(redactPii(text, [...ALL].reverse())).toEqual(expected);
  });

  it('leaves text unchanged for address and person_name, which need a classifier', () => {
    const prose = 'Jane Doe lives at 221B Baker Street, London NW1 6XE.';
    expect(redactPii(prose, ['address', 'person_name'])).toEqual({ text: prose, redactions: 0 });
  });
});
