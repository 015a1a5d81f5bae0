import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTransport } from 'nodemailer';
import MailComposer from 'nodemailer/lib/mail-composer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../ops/freePort.ts';
import type { ConnectionSink } from '../../pipeline/channels/ChannelPlugin.ts';
import { createEmailSender, retryHintMs } from '../../pipeline/channels/email/createEmailSender.ts';
import { emailPlugin } from '../../pipeline/channels/email/emailPlugin.ts';
import { readInboundEmail } from '../../pipeline/channels/email/readInboundEmail.ts';
import { stripQuotedReply } from '../../pipeline/channels/email/stripQuotedReply.ts';
import type { InboundBatch } from '../../pipeline/channels/inboundTypes.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import { AppError, NonRetryableError, RetryAfterError } from '../../pipeline/errors.ts';
import { deliverEmail, plainQuestion, type EmailFixture } from '../fakes/emailMessages.ts';
import { startSmtpRelay, type SmtpRelay } from '../fakes/smtpRelay.ts';

function account(overrides: Record<string, unknown> = {}) {
  const parsed = ChannelContract.parse({
    type: 'email',
    address: 'agent@acme.test',
    allowSenders: ['alice@customer.test', '@partner.test'],
    listen: { port: 2525 },
    relay: { host: '127.0.0.1', port: 2526 },
    ...overrides,
  });
  if (parsed.type !== 'email') throw new Error('not an email account');
  return parsed;
}

const compose = (mail: EmailFixture) => new MailComposer(mail).compile().build();
const read = async (mail: EmailFixture, mailFrom = 'alice@customer.test', acct = account()) =>
  readInboundEmail(await compose(mail), { mailFrom }, acct);

describe('stripQuotedReply', () => {
  it('drops a trailing quote and its attribution line, also one wrapped onto two lines', () => {
    expect(
      stripQuotedReply(
        'Thanks, and db-2?\n\nOn Tue, 1 Dec 2026, Agent wrote:\n> db-1 is fine\n>\n',
      ),
    ).toBe('Thanks, and db-2?');
    expect(
      stripQuotedReply(
        'Thanks!\r\n\r\nOn Tue, 1 Dec 2026 at 09:01, agent@acme.test <agent@acme.test>\r\nwrote:\r\n> db-1 is fine\r\n',
      ),
    ).toBe('Thanks!');
  });

  it('drops what follows an Outlook "Original Message" divider', () => {
    expect(
      stripQuotedReply(
        'Yes please.\n\n-----Original Message-----\nFrom: Agent\nSent: Tuesday\n\nShall I restart it?',
      ),
    ).toBe('Yes please.');
  });

  it('keeps quotes between the sender’s own lines, and everything when only a quote would be left', () => {
    const inline = '> is db-1 up?\nyes\n> and db-2?\nno, restart it';
    expect(stripQuotedReply(inline)).toBe(inline);
    expect(stripQuotedReply('> only a quote\n> nothing else\n')).toBe(
      '> only a quote\n> nothing else',
    );
  });
});

describe('readInboundEmail', () => {
  it('takes the text an HTML-only message carries', async () => {
    const got = await read({
      messageId: '<html-only@customer.test>',
      from: 'alice@customer.test',
      to: 'agent@acme.test',
      subject: 'status',
      html: '<p>Is <b>db-1</b> up?</p>',
    });
    expect(got.kind === 'message' && got.event.message.text).toBe(
      'Is DB-1 up?'.replace('DB', 'db'),
    );
  });

  it('uses the subject as the text of a message with an empty body', async () => {
    const got = await read({
      messageId: '<subject-only@customer.test>',
      from: 'alice@customer.test',
      to: 'agent@acme.test',
      subject: 'restart db-1 please',
      text: '',
    });
    expect(got.kind === 'message' && got.event.message).toMatchObject({
      text: 'restart db-1 please',
      subject: 'restart db-1 please',
    });
  });

  it('allows an @domain only for that very domain, not one ending in it or a subdomain', async () => {
    const from = async (address: string) =>
      (await read(plainQuestion({ messageId: `<${address}@x.test>`, from: address }), address))
        .kind;
    expect(await from('zoe@partner.test')).toBe('message');
    expect(await from('ZOE@PARTNER.TEST')).toBe('message');
    expect(await from('eve@evilpartner.test')).toBe('refused');
    expect(await from('eve@mail.partner.test')).toBe('refused');
    expect(await from('alice@customer.test.evil')).toBe('refused');
  });

  it('ignores automatic mail and the account’s own, refuses a message with no From', async () => {
    const mail = plainQuestion({ messageId: '<auto@customer.test>' });
    expect(await read({ ...mail, headers: { Precedence: 'bulk' } })).toMatchObject({
      kind: 'ignored',
    });
    expect(await read({ ...mail, headers: { 'Auto-Submitted': 'auto-generated' } })).toMatchObject({
      kind: 'ignored',
    });
    expect(await read({ ...mail, headers: { 'Auto-Submitted': 'no' } })).toMatchObject({
      kind: 'message',
    });
    expect(await read(mail, '')).toMatchObject({
      kind: 'ignored',
      reason: expect.stringMatching(/bounce/),
    });
    expect(await read({ ...mail, from: 'agent@acme.test' })).toMatchObject({ kind: 'ignored' });
    const raw = Buffer.from('To: agent@acme.test\r\nSubject: who?\r\n\r\nhello\r\n');
    expect(await readInboundEmail(raw, { mailFrom: 'x@y.test' }, account())).toMatchObject({
      kind: 'refused',
      responseCode: 550,
    });
  });

  it('keys a Message-ID too long for an event on its SHA-256, and threads on the References root', async () => {
    const long = `<${'a'.repeat(250)}@customer.test>`;
    const got = await read({
      ...plainQuestion({ messageId: long }),
      inReplyTo: '<parent@acme.test>',
      references: ['<root@customer.test>', '<parent@acme.test>'],
    });
    expect(got.kind === 'message' && got.event).toMatchObject({
      externalEventId: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      conversation: { kind: 'dm', id: 'alice@customer.test', threadId: 'root@customer.test' },
      message: { replyToExternalId: 'parent@acme.test' },
    });
  });

  it('refuses for good (554) a message mailparser cannot read, so the relay stops retrying it', async () => {
    const parts = Array.from(
      { length: 1001 },
      (_, i) => `--b\r\nContent-Type: text/plain\r\n\r\npart ${i}\r\n`,
    );
    const raw = Buffer.from(
      `From: alice@customer.test\r\nTo: agent@acme.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n${parts.join('')}--b--\r\n`,
    );
    expect(
      await readInboundEmail(raw, { mailFrom: 'alice@customer.test' }, account()),
    ).toMatchObject({
      kind: 'refused',
      responseCode: 554,
    });
  });

  it('lists attachments past maxAttachments as too_many', async () => {
    const got = await read(
      {
        ...plainQuestion({ messageId: '<many@customer.test>' }),
        attachments: [1, 2, 3].map((n) => ({ filename: `f${n}.txt`, content: `file ${n}` })),
      },
      'alice@customer.test',
      account({ media: { maxAttachments: 2 } }),
    );
    expect(
      got.kind === 'message' && got.event.message.attachments?.map((a) => [a.name, a.omitted]),
    ).toEqual([
      ['f1.txt', undefined],
      ['f2.txt', undefined],
      ['f3.txt', 'too_many'],
    ]);
  });
});

describe('the email contract', () => {
  const issues = (overrides: Record<string, unknown>) => {
    const r = ChannelContract.safeParse({
      type: 'email',
      address: 'agent@acme.test',
      allowSenders: ['alice@customer.test'],
      listen: { port: 2525 },
      relay: { host: 'smtp.acme.test' },
      ...overrides,
    });
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('refuses approvals, an open allow-list, a malformed sender and a clear-text password off loopback', () => {
    expect(issues({})).toEqual([]);
    expect(issues({ approvals: true })).toEqual([
      'approvals: an email account cannot ask approvers (no buttons)',
    ]);
    expect(issues({ allowSenders: [] })[0]).toMatch(/^allowSenders:/);
    expect(issues({ allowSenders: ['*'] })[0]).toMatch(/^allowSenders\.0:/);
    const auth = { username: 'mx', password: 'secret:mx-pass' };
    expect(issues({ listen: { port: 2525, auth } })).toEqual([]);
    expect(issues({ listen: { host: '0.0.0.0', port: 25, auth } })).toEqual([
      'listen.tls: listen.auth on 0.0.0.0 needs listen.tls: the password would cross the network in clear (or listen on 127.0.0.1)',
    ]);
    expect(
      issues({
        listen: { host: '0.0.0.0', port: 25, auth, tls: { key: 'secret:k', cert: 'secret:c' } },
      }),
    ).toEqual([]);
  });
});

describe('retryHintMs', () => {
  it('reads the wait a relay names, in seconds or minutes', () => {
    expect(retryHintMs('451 4.7.1 Greylisted, try again in 300 seconds')).toBe(300_000);
    expect(retryHintMs('450 4.2.0 please retry in 5 min')).toBe(300_000);
    expect(retryHintMs('421 4.7.0 Try again later')).toBeNull();
  });
});

describe('the email sender', () => {
  let relay: SmtpRelay;
  const auth = { username: 'out', password: 'relay-pass-0123' };
  beforeAll(async () => {
    relay = await startSmtpRelay({ auth });
  });
  afterAll(async () => {
    await relay?.close();
  });
  const sender = (port = relay.port, password = auth.password) =>
    createEmailSender(
      account({
        relay: { host: '127.0.0.1', port, auth: { username: auth.username, password: 'secret:p' } },
      }),
      password,
      { timeoutMs: 3000 },
    );
  const mail = {
    rowId: '7f1c2a9e-0000-4000-8000-000000000001',
    text: 'db-1 is at 71%.',
    to: 'alice@customer.test',
    subject: 'Disk usage',
    inReplyTo: 'q1@customer.test',
    threadRoot: 'q1@customer.test',
  };
  const failure = async (send: Promise<unknown>) => {
    try {
      await send;
    } catch (error) {
      return error;
    }
    throw new Error('the send did not fail');
  };

  it('maps a 4xx without a hint to a retryable CHANNEL_UNAVAILABLE, with one to its wait', async () => {
    relay.failNext(1, { code: 450, message: '4.2.1 mailbox busy', at: 'RCPT' });
    const plain = await failure(sender().send(mail));
    expect(plain).toBeInstanceOf(AppError);
    expect(plain).not.toBeInstanceOf(NonRetryableError);
    expect(plain).not.toBeInstanceOf(RetryAfterError);
    expect(plain).toMatchObject({ code: 'CHANNEL_UNAVAILABLE' });
    relay.failNext(1, { code: 451, message: '4.7.1 try again in 2 seconds' });
    const hinted = await failure(sender().send(mail));
    expect(hinted).toBeInstanceOf(RetryAfterError);
    expect(hinted).toMatchObject({ code: 'CHANNEL_UNAVAILABLE', retryAfterMs: 2000 });
  });

  it('maps a 5xx and a bad relay password to CHANNEL_REJECTED, the password never in the text', async () => {
    relay.failNext(1, { code: 550, message: '5.1.1 no such user' });
    expect(await failure(sender().send(mail))).toBeInstanceOf(NonRetryableError);
    const bad = await failure(sender(relay.port, 'wrong-relay-pass').send(mail));
    expect(bad).toBeInstanceOf(NonRetryableError);
    expect(String((bad as Error).message)).not.toContain('wrong-relay-pass');
  });

  it('takes a refused connection as not sent, and a relay silent after the data as uncertain', async () => {
    const closed = await freePort();
    expect(await failure(sender(closed).send(mail))).toMatchObject({
      code: 'CHANNEL_UNAVAILABLE',
    });
    // A relay that takes the whole message and drops the connection before answering it.
    const silent: Server = createServer((socket) => {
      socket.write('220 silent ESMTP\r\n');
      let data = false;
      let buffer = '';
      socket.on('data', (chunk) => {
        buffer += chunk.toString('latin1');
        if (data) {
          if (buffer.includes('\r\n.\r\n')) socket.destroy();
          return;
        }
        const lines = buffer.split('\r\n');
        buffer = lines.pop() ?? '';
        for (const line of lines) {
          const verb = line.slice(0, 4).toUpperCase();
          if (verb === 'EHLO') socket.write('250-silent\r\n250 AUTH PLAIN LOGIN\r\n');
          else if (verb === 'AUTH') socket.write('235 ok\r\n');
          else if (verb === 'DATA') {
            data = true;
            socket.write('354 go ahead\r\n');
          } else socket.write('250 ok\r\n');
        }
      });
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = (silent.address() as { port: number }).port;
      expect(await failure(sender(port).send(mail))).toMatchObject({ code: 'CHANNEL_UNCERTAIN' });
    } finally {
      await new Promise((r) => silent.close(r));
    }
  });

  it('submits one message per row that threads, with a Message-ID of the row', async () => {
    const sent = await sender().send({
      ...mail,
      inReplyTo: 'q2@customer.test',
      part: { index: 1, count: 2 },
    });
    expect(sent.messageId).toBe('<7f1c2a9e-0000-4000-8000-000000000001@acme.test>');
    const got = relay.received.at(-1)!;
    expect(got.user).toBe('out');
    expect(got.parsed).toMatchObject({
      subject: 'Re: Disk usage (2/2)',
      inReplyTo: '<q2@customer.test>',
      references: ['<q1@customer.test>', '<q2@customer.test>'],
      messageId: sent.messageId,
    });
  });
});

describe('the listener over TLS', () => {
  let dir: string;
  let key: string;
  let cert: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'awooop-email-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=localhost',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    key = readFileSync(join(dir, 'key.pem'), 'utf8');
    cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('takes mail only after STARTTLS, and stops taking any once stopped', async () => {
    const port = await freePort();
    const acct = account({
      listen: {
        port,
        auth: { username: 'mx', password: 'secret:mx' },
        tls: { key: 'secret:k', cert: 'secret:c' },
      },
    });
    const batches: InboundBatch[] = [];
    const states: string[] = [];
    const sink: ConnectionSink = {
      messages: async (batch) => {
        batches.push(batch);
        return { runs: ['run-1'], duplicate: false };
      },
      approval: async () => {},
      state: (s) => void states.push(s),
    };
    const adapter = emailPlugin.connection!;
    expect(adapter.credentials(acct)).toEqual(['secret:mx', 'secret:k', 'secret:c']);
    const held = await adapter.open(acct, ['mx-pass', key, cert], sink, {
      projectId: 'p',
      accountId: 'mail',
    });
    expect(states).toEqual(['running']);
    const mail = plainQuestion({ messageId: '<tls-1@customer.test>' });
    const clear = await deliverEmail({ host: '127.0.0.1', port }, mail);
    expect(clear.code).toBe(530);
    const transport = createTransport({
      host: '127.0.0.1',
      port,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'mx', pass: 'mx-pass' },
    });
    try {
      const info = await transport.sendMail(mail);
      expect(info.response).toMatch(/^250 /);
    } finally {
      transport.close();
    }
    expect(batches).toHaveLength(1);
    expect(batches[0]?.events[0]?.externalEventId).toBe('tls-1@customer.test');
    await held.stop();
    await held.stop();
    const after = await deliverEmail({ host: '127.0.0.1', port }, mail);
    expect(after.code).toBe(0);
    expect(batches).toHaveLength(1);
  });
});
