import { simpleParser, type ParsedMail } from 'mailparser';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

/** One message the fake relay took (250 after DATA). */
export type RelayedMail = {
  envelope: { from: string; to: string[] };
  /** The user the client authenticated as (undefined without AUTH). */
  user: string | undefined;
  raw: Buffer;
  parsed: ParsedMail;
};

/** A scripted refusal for {@link SmtpRelay.failNext}: the SMTP reply and where it is given. */
export type RelayFailure = {
  /** A 4xx (try later) or 5xx (refused) reply code. */
  code: number;
  message: string;
  /** The command the reply answers. @defaultValue `'DATA'` */
  at?: 'MAIL' | 'RCPT' | 'DATA';
};

/** A local SMTP peer standing in for an organisation's outbound relay. */
export type SmtpRelay = {
  host: string;
  port: number;
  received: RelayedMail[];
  /** Every transaction that reached DATA or was refused, with the reply it got. */
  replies: { code: number; at: string }[];
  /** The next `n` deliveries are refused with `failure` instead of taken. */
  failNext(n: number, failure: RelayFailure): void;
  close(): Promise<void>;
};

/**
 * Starts a fake outbound relay on a local port: plain SMTP (no STARTTLS), AUTH PLAIN/LOGIN
 * required when `auth` is given (anything else 535), every message parsed with mailparser and
 * recorded once it is answered 250, or refused with a scripted 4xx/5xx at MAIL FROM, RCPT TO
 * or after DATA.
 */
export async function startSmtpRelay({
  auth,
}: { auth?: { username: string; password: string } } = {}): Promise<SmtpRelay> {
  const received: RelayedMail[] = [];
  const replies: { code: number; at: string }[] = [];
  const failures: RelayFailure[] = [];
  const refuse = (at: 'MAIL' | 'RCPT' | 'DATA') => {
    if ((failures[0]?.at ?? 'DATA') !== at) return null;
    const failure = failures.shift();
    if (!failure) return null;
    replies.push({ code: failure.code, at });
    return Object.assign(new Error(failure.message), { responseCode: failure.code });
  };
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    disabledCommands: auth ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
    authOptional: !auth,
    allowInsecureAuth: true,
    closeTimeout: 1000,
    onAuth(credentials, _session, callback) {
      if (auth && credentials.username === auth.username && credentials.password === auth.password)
        return callback(null, { user: credentials.username });
      callback(Object.assign(new Error('5.7.8 bad credentials'), { responseCode: 535 }));
    },
    onMailFrom(_address, _session, callback) {
      callback(refuse('MAIL'));
    },
    onRcptTo(_address, _session, callback) {
      callback(refuse('RCPT'));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const failure = refuse('DATA');
        if (failure) return callback(failure);
        const raw = Buffer.concat(chunks);
        simpleParser(raw).then(
          (parsed) => {
            received.push({
              envelope: {
                from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
                to: session.envelope.rcptTo.map((r) => r.address),
              },
              user: session.user as string | undefined,
              raw,
              parsed,
            });
            replies.push({ code: 250, at: 'DATA' });
            callback(null, 'queued');
          },
          (error: Error) => callback(error),
        );
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    received,
    replies,
    failNext(n, failure) {
      for (let i = 0; i < n; i += 1) failures.push(failure);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
