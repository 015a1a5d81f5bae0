import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptInbound } from '../../ingress/acceptInbound.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { freePort } from '../../ops/freePort.ts';
import type { ConnectionSink, HeldConnection } from '../../pipeline/channels/ChannelPlugin.ts';
import { emailPlugin } from '../../pipeline/channels/email/emailPlugin.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import type { MigrationMode } from '../../pipeline/contracts/common.ts';
import type { ConversationEvent } from '../../pipeline/contracts/conversationEvent.ts';
import {
  deliverEmail,
  plainQuestion,
  replyTo,
  richMessage,
  type EmailFixture,
} from '../fakes/emailMessages.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startSmtpRelay, type SmtpRelay } from '../fakes/smtpRelay.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// Email end to end: real MIME messages delivered by nodemailer's SMTP client into the
// account's SMTP listener (opened here as the ChannelManager would, with a sink that makes
// runs durable as ingress does), the five stages, and answers submitted by nodemailer to a
// fake outbound relay.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'mailco';
const SHADOW = 'mailshadow';
const ACCOUNT = 'mail';
const LISTEN_AUTH = { user: 'mx-relay', pass: 'listener-password-0123456789' };
const RELAY_AUTH = { username: 'awooop-out', password: 'relay-password-9876543210' };

let relay: SmtpRelay;
let model: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;
let owner: pg.Client;
const listeners: HeldConnection[] = [];
const ports: Record<string, number> = {};
/** When set, the next sink call commits and then fails, as a crash before the 250 would. */
let failAfterCommit = 0;
let nextId = 1;

const messageId = (what: string) => `<${what}.${nextId++}.${Date.now()}@customer.test>`;
const bare = (id: string) => id.slice(1, -1);

async function setUpProject(projectId: string, mode: MigrationMode, modelBaseUrl?: string) {
  const input = pipelineTenant({
    projectId,
    telegramApiRoot: 'http://127.0.0.1:9/',
    lineBaseUrl: 'http://127.0.0.1:9',
    mode,
    ...(modelBaseUrl ? { modelBaseUrl } : {}),
  });
  const port = await freePort();
  ports[projectId] = port;
  const account = ChannelContract.parse({
    type: 'email',
    address: 'agent@acme.test',
    aliases: ['help@acme.test'],
    allowSenders: ['alice@customer.test', '@partner.test'],
    listen: {
      port,
      auth: { username: LISTEN_AUTH.user, password: 'secret:email-listen' },
      maxMessageBytes: 64_000,
    },
    relay: {
      host: relay.host,
      port: relay.port,
      auth: { username: RELAY_AUTH.username, password: 'secret:email-relay' },
    },
    media: { maxAttachments: 5, maxBytes: 4000 },
  });
  input.tenant.channels[ACCOUNT] = account;
  await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, input);
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(projectId, name, value);
  await pipeline.setSecret(projectId, 'email-listen', LISTEN_AUTH.pass);
  await pipeline.setSecret(projectId, 'email-relay', RELAY_AUTH.password);
  if (account.type !== 'email') throw new Error('not an email account');
  const sink: ConnectionSink = {
    async messages(batch) {
      const accepted = await acceptInbound(
        {
          pool: db().pool,
          enqueue: pipeline.queues.enqueue,
          logger: pipeline.ctx.logger,
          secrets: pipeline.ctx.secrets,
          redis: pipeline.ctx.redis,
          redisPrefix: pipeline.ctx.redisPrefix,
        },
        {
          projectId,
          channel: 'email',
          accountId: ACCOUNT,
          traceId: randomBytes(16).toString('hex'),
        },
        batch.events,
      );
      if (failAfterCommit > 0) {
        failAfterCommit -= 1;
        throw new Error('the process died before answering the relay');
      }
      return { runs: accepted.map((a) => a.runId), duplicate: accepted.some((a) => !a.created) };
    },
    approval: () => Promise.reject(new Error('email has no buttons')),
    state: () => {},
  };
  const connection = emailPlugin.connection!;
  const credentials = await Promise.all(
    connection.credentials(account).map((ref) => pipeline.ctx.secrets.resolve(projectId, ref)),
  );
  listeners.push(
    await connection.open(account, credentials, sink, { projectId, accountId: ACCOUNT }),
  );
}

beforeAll(async () => {
  relay = await startSmtpRelay({ auth: RELAY_AUTH });
  model = await startModelServer();
  pipeline = await startPipeline({ pool: db().pool, prefix });
  owner = await db().owner();
  await setUpProject(PROJECT, 'read_only', model.url);
  await setUpProject(SHADOW, 'shadow');
});

afterAll(async () => {
  for (const l of listeners) await l.stop();
  await pipeline?.close();
  await relay?.close();
  await model?.close();
});

function deliver(
  mail: EmailFixture,
  {
    projectId = PROJECT,
    auth = LISTEN_AUTH,
    envelope,
  }: {
    projectId?: string;
    auth?: { user: string; pass: string } | null;
    envelope?: { from: string; to: string[] };
  } = {},
) {
  return deliverEmail({ host: '127.0.0.1', port: ports[projectId]! }, mail, {
    ...(auth ? { auth } : {}),
    ...(envelope ? { envelope } : {}),
  });
}

type RunRow = { run_id: string; state: string; failure_code: string | null; session_key: string };
async function runsOf(externalEventId: string): Promise<RunRow[]> {
  const { rows } = await owner.query<RunRow>(
    `SELECT r.run_id, r.state, r.failure_code, r.session_key FROM runs r
       JOIN conversation_events e ON e.event_id = r.event_id
      WHERE e.external_event_id = $1`,
    [externalEventId],
  );
  return rows;
}
const finished = (externalEventId: string) =>
  waitFor(
    async () => {
      const [run] = await runsOf(externalEventId);
      return run && (run.state === 'COMPLETED' || run.state === 'FAILED') ? run : undefined;
    },
    { what: `the run of ${externalEventId} to finish` },
  );
async function ledger(runId: string) {
  const { rows } = await owner.query<{
    kind: string;
    status: string;
    method: string | null;
    external_message_id: string | null;
  }>(
    'SELECT kind, status, method, external_message_id FROM outbound_messages WHERE run_id = $1 ORDER BY kind, chunk_index',
    [runId],
  );
  return rows;
}
const answersTo = (id: string) => relay.received.filter((m) => m.parsed.inReplyTo === id);

/** Runs `act` and checks that no table row and no queued job came of it. */
async function expectNothingWritten<T>(act: () => Promise<T>): Promise<T> {
  const counts = await tableCounts(owner);
  const jobs = await pipeline.queues.queues.resolve.getJobCounts();
  const result = await act();
  expect(await tableCounts(owner)).toEqual(counts);
  expect(await pipeline.queues.queues.resolve.getJobCounts()).toEqual(jobs);
  return result;
}

describe('email in and out', () => {
  it('answers a message once, From the account To the sender, threaded under it', async () => {
    const id = messageId('q');
    const res = await deliver(plainQuestion({ messageId: id }));
    expect(res.code).toBe(250);
    const run = await finished(bare(id));
    expect(run.state).toBe('COMPLETED');
    const answers = answersTo(id);
    expect(answers).toHaveLength(1);
    const answer = answers[0]!;
    expect(answer.user).toBe(RELAY_AUTH.username);
    expect(answer.envelope).toEqual({ from: 'agent@acme.test', to: ['alice@customer.test'] });
    expect(answer.parsed.from?.value[0]?.address).toBe('agent@acme.test');
    expect(answer.parsed.subject).toBe('Re: Disk usage on db-1');
    expect(answer.parsed.references).toBe(id);
    expect(answer.parsed.text?.trim()).toBe('model: Hi, how full is the disk on db-1 right now?');
    expect(answer.parsed.headers.get('auto-submitted')).toBe('auto-replied');
    expect(await ledger(run.run_id)).toEqual([
      {
        kind: 'reply',
        status: 'sent',
        method: 'smtp',
        external_message_id: answer.parsed.messageId,
      },
    ]);
  });

  it('reads the text part of a multipart message with its encoded headers, attachments as references', async () => {
    const id = messageId('rich');
    expect((await deliver(richMessage({ messageId: id }))).code).toBe(250);
    const run = await finished(bare(id));
    expect(run.state).toBe('COMPLETED');
    const { rows } = await owner.query<{ body: ConversationEvent }>(
      'SELECT body FROM conversation_events WHERE external_event_id = $1',
      [bare(id)],
    );
    const event = rows[0]!.body;
    expect(event.sender).toEqual({
      id: 'zoe@partner.test',
      displayName: 'Zoë Ångström',
      isBot: false,
    });
    expect(event.conversation).toEqual({
      kind: 'dm',
      id: 'zoe@partner.test',
      threadId: bare(id),
    });
    expect(event.message.subject).toBe('Über die Rechnung — 請求書 #4411');
    expect(event.message.text).toContain('the invoice 4411 looks wrong');
    expect(event.message.text).not.toContain('<b>');
    // In MIME order: the image sits beside the HTML it is shown in (multipart/related).
    expect(event.message.attachments).toEqual([
      {
        kind: 'image',
        ref: 'cid:shot-1@partner.test',
        mimeType: 'image/png',
        sizeBytes: 70,
        name: 'screenshot.png',
      },
      {
        kind: 'file',
        ref: 'part:2',
        mimeType: 'application/pdf',
        sizeBytes: 6009,
        name: 'Rechnung-4411.pdf',
        omitted: 'too_large',
      },
    ]);
    const [answer] = answersTo(id);
    expect(answer?.envelope.to).toEqual(['zoe@partner.test']);
    expect(answer?.parsed.subject).toBe('Re: Über die Rechnung — 請求書 #4411');
  });

  it('joins a reply in the thread to the same session: the second run sees the first exchange', async () => {
    const first = messageId('thread');
    await deliver(plainQuestion({ messageId: first, text: 'Is db-1 healthy?' }));
    const one = await finished(bare(first));
    const ours = answersTo(first)[0]!.parsed.messageId!;
    const second = messageId('thread-reply');
    const res = await deliver(
      replyTo({
        messageId: second,
        parent: ours,
        references: [first],
        quoted: 'model: Is db-1 healthy?',
        text: 'And db-2?',
      }),
    );
    expect(res.code).toBe(250);
    const two = await finished(bare(second));
    expect(two.state).toBe('COMPLETED');
    expect(two.session_key).toBe(one.session_key);
    const request = model.requests.find((r) =>
      r.body.messages.some((m) => m.role === 'user' && m.content === 'And db-2?'),
    );
    // The quoted history is not the message: the session's history carries the exchange.
    expect(request?.body.messages.slice(1).map((m) => [m.role, m.content])).toEqual([
      ['user', 'Is db-1 healthy?'],
      ['assistant', 'model: Is db-1 healthy?'],
      ['user', 'And db-2?'],
    ]);
    const [answer] = answersTo(second);
    expect(answer?.parsed.references).toEqual([first, second]);
    expect(answer?.parsed.subject).toBe('Re: Disk usage on db-1');
  });

  it('makes one run and one answer of five concurrent deliveries of a Message-ID', async () => {
    const id = messageId('five');
    const mail = plainQuestion({ messageId: id, text: 'five times' });
    const replies = await Promise.all([0, 1, 2, 3, 4].map(() => deliver(mail)));
    expect(replies.map((r) => r.code)).toEqual([250, 250, 250, 250, 250]);
    await finished(bare(id));
    expect(await runsOf(bare(id))).toHaveLength(1);
    // Let a stray second answer show before counting.
    await new Promise((r) => setTimeout(r, 500));
    expect(answersTo(id)).toHaveLength(1);
  });

  it('answers 451 when the run could not be confirmed, and the relay retry makes no second run', async () => {
    const id = messageId('retry');
    const mail = plainQuestion({ messageId: id, text: 'retried' });
    failAfterCommit = 1;
    const lost = await deliver(mail);
    expect(lost.code).toBe(451);
    const again = await deliver(mail);
    expect(again.code).toBe(250);
    await finished(bare(id));
    expect(await runsOf(bare(id))).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 500));
    expect(answersTo(id)).toHaveLength(1);
  });

  it('dedupes a message without a Message-ID on a digest of its headers and text', async () => {
    const raw = [
      'From: Alice Example <alice@customer.test>',
      'To: agent@acme.test',
      'Date: Tue, 01 Dec 2026 11:00:00 +0000',
      'Subject: no id here',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'A message from an old script.',
      '',
    ].join('\r\n');
    const envelope = { from: 'alice@customer.test', to: ['agent@acme.test'] };
    expect((await deliver({ raw, envelope }, { envelope })).code).toBe(250);
    expect((await deliver({ raw, envelope }, { envelope })).code).toBe(250);
    const { rows } = await owner.query<{ external_event_id: string }>(
      "SELECT external_event_id FROM conversation_events WHERE body #>> '{message,subject}' = 'no id here'",
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.external_event_id).toMatch(/^digest:[0-9a-f]{64}$/);
    const run = await finished(rows[0]!.external_event_id);
    expect(run.state).toBe('COMPLETED');
    const answer = relay.received.find((m) => m.parsed.subject === 'Re: no id here');
    expect(answer?.parsed.inReplyTo).toBeUndefined();
  });

  // Regression: a credential typed into the subject was stored and sent back as is; ingress
  // redacted only the text and the sender's name.
  it("removes the project's credentials from the subject as from the text before storing it", async () => {
    const id = messageId('leak');
    const mail = plainQuestion({
      messageId: id,
      subject: `is ${RELAY_AUTH.password} still valid?`,
      text: `the relay password is ${RELAY_AUTH.password}`,
    });
    expect((await deliver(mail)).code).toBe(250);
    await finished(bare(id));
    const { rows } = await owner.query<{ body: ConversationEvent }>(
      'SELECT body FROM conversation_events WHERE external_event_id = $1',
      [bare(id)],
    );
    expect(rows[0]!.body.message).toMatchObject({
      subject: 'is [REDACTED] still valid?',
      text: 'the relay password is [REDACTED]',
    });
    expect(answersTo(id)[0]?.parsed.subject).toBe('Re: is [REDACTED] still valid?');
  });

  it('takes automatic mail (Auto-Submitted) with 250 and makes no run', async () => {
    const mail = {
      ...plainQuestion({ messageId: messageId('ooo'), subject: 'Out of office' }),
      headers: { 'Auto-Submitted': 'auto-replied' },
    };
    const res = await expectNothingWritten(() => deliver(mail));
    expect(res.code).toBe(250);
  });
});

describe('refused deliveries write nothing', () => {
  it('refuses a wrong password (535) and a delivery without AUTH (530)', async () => {
    const mail = plainQuestion({ messageId: messageId('auth') });
    const bad = await expectNothingWritten(() =>
      deliver(mail, { auth: { user: LISTEN_AUTH.user, pass: 'not-the-password' } }),
    );
    expect(bad.code).toBe(535);
    const none = await expectNothingWritten(() => deliver(mail, { auth: null }));
    expect(none.code).toBe(530);
  });

  it('refuses a sender off the allow-list (550), also one spoofing an allowed envelope', async () => {
    const mail = plainQuestion({
      messageId: messageId('stranger'),
      from: 'Mallory <mallory@elsewhere.test>',
    });
    expect((await expectNothingWritten(() => deliver(mail))).code).toBe(550);
    const spoofed = await expectNothingWritten(() =>
      deliver(mail, { envelope: { from: 'alice@customer.test', to: ['agent@acme.test'] } }),
    );
    expect(spoofed.code).toBe(550);
  });

  it('refuses a recipient other than the account and its aliases (550)', async () => {
    const mail = plainQuestion({ messageId: messageId('rcpt'), to: 'someone-else@acme.test' });
    const res = await expectNothingWritten(() => deliver(mail));
    expect(res.code).toBe(550);
  });

  it('refuses a message over maxMessageBytes (552)', async () => {
    const mail = plainQuestion({ messageId: messageId('big'), text: 'x'.repeat(80_000) });
    const res = await expectNothingWritten(() => deliver(mail));
    expect(res.code).toBe(552);
  });
});

describe('the outbound relay', () => {
  it("waits out a 451's hint and still sends the answer once", async () => {
    const id = messageId('grey');
    const before = relay.replies.length;
    relay.failNext(1, { code: 451, message: '4.7.1 greylisted, try again in 1 seconds' });
    await deliver(plainQuestion({ messageId: id, text: 'greylisted' }));
    const run = await finished(bare(id));
    expect(run.state).toBe('COMPLETED');
    expect(relay.replies.slice(before)).toEqual([
      { code: 451, at: 'DATA' },
      { code: 250, at: 'DATA' },
    ]);
    expect(answersTo(id)).toHaveLength(1);
    expect((await ledger(run.run_id))[0]).toMatchObject({ status: 'sent', method: 'smtp' });
  });

  it('takes a 421 at MAIL FROM as not sent and sends the answer once later', async () => {
    const id = messageId('busy');
    const before = relay.replies.length;
    relay.failNext(1, { code: 421, message: '4.3.2 service not available', at: 'MAIL' });
    await deliver(plainQuestion({ messageId: id, text: 'busy relay' }));
    const run = await finished(bare(id));
    expect(run.state).toBe('COMPLETED');
    expect(relay.replies.slice(before).map((r) => r.code)).toEqual([421, 250]);
    expect(answersTo(id)).toHaveLength(1);
  });

  it('fails the run on a 5xx and never resubmits the answer: the sender gets the failure notice', async () => {
    const id = messageId('refused');
    const before = relay.replies.length;
    relay.failNext(1, { code: 554, message: '5.7.1 message refused' });
    await deliver(plainQuestion({ messageId: id, text: 'refused' }));
    const run = await finished(bare(id));
    expect(run).toMatchObject({ state: 'FAILED', failure_code: 'CHANNEL_REJECTED' });
    // The failure notice goes out after the run failed: wait for it, then count.
    await waitFor(
      async () =>
        (await ledger(run.run_id)).some((r) => r.kind === 'failure' && r.status === 'sent'),
      { what: 'the failure notice to be sent' },
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(relay.replies.slice(before).map((r) => r.code)).toEqual([554, 250]);
    expect(answersTo(id).map((m) => m.parsed.text?.trim())).toEqual([
      'Sorry, I could not finish that. The team has been told.',
    ]);
    expect((await ledger(run.run_id)).map((r) => [r.kind, r.status])).toEqual([
      ['failure', 'sent'],
      ['reply', 'failed'],
    ]);
  });

  it('sends nothing in shadow mode: the answer is recorded suppressed', async () => {
    const id = messageId('shadow');
    const res = await deliver(plainQuestion({ messageId: id, text: 'quiet' }), {
      projectId: SHADOW,
    });
    expect(res.code).toBe(250);
    const run = await finished(bare(id));
    expect(run.state).toBe('COMPLETED');
    expect(answersTo(id)).toHaveLength(0);
    expect(await ledger(run.run_id)).toEqual([
      { kind: 'reply', status: 'suppressed', method: null, external_message_id: null },
    ]);
  });
});
