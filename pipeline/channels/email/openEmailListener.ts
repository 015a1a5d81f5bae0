import { timingSafeEqual } from 'node:crypto';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { AppError, ContractViolationError } from '../../errors.ts';
import type { AccountOf, ConnectionSink, HeldConnection } from '../ChannelPlugin.ts';
import { readInboundEmail } from './readInboundEmail.ts';

/** The secret refs the listener needs, in the order {@link openEmailListener} takes them. */
export function listenerCredentials(account: AccountOf<'email'>) {
  const { auth, tls } = account.listen;
  return [...(auth ? [auth.password] : []), ...(tls ? [tls.key, tls.cert] : [])];
}

/** An SMTP reply for a refused command or message. */
function smtpError(responseCode: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode });
}

/**
 * The account's SMTP listener (smtp-server) on `listen.host:port`, taking the mail the
 * organisation's MX or relay pushes to it. In order, a delivery must: pass SMTP AUTH when
 * `listen.auth` is set (a wrong user or password: 535), come over TLS when `listen.tls` is set
 * (530 before STARTTLS), name only the account's addresses at RCPT TO (550 for any other), fit
 * `maxMessageBytes` (SIZE is advertised; past it 552), and be from an allowed sender (550
 * after DATA, once the From header is read). Only then are its runs made durable through the
 * sink, and only once that resolved is it answered 250: a failure before (the database away,
 * a crash) is a 451 or a dropped connection, so the relay delivers it again, and the retry
 * finds its run by Message-ID. Nothing refused is written.
 */
export async function openEmailListener(
  account: AccountOf<'email'>,
  credentials: readonly string[],
  sink: ConnectionSink,
): Promise<HeldConnection> {
  const { listen } = account;
  const values = [...credentials];
  const password = listen.auth ? values.shift() : undefined;
  const tlsKey = listen.tls ? values.shift() : undefined;
  const tlsCert = listen.tls ? values.shift() : undefined;
  const accepts = new Set([account.address, ...account.aliases].map((a) => a.toLowerCase()));
  const inFlight = new Set<Promise<unknown>>();
  let stopping = false;

  const options: SMTPServerOptions = {
    name: account.address.split('@')[1] ?? 'localhost',
    size: listen.maxMessageBytes,
    banner: 'AwoooP',
    logger: false,
    disableReverseLookup: true,
    closeTimeout: 10_000,
    ...(listen.tls ? { secure: listen.tls.implicit, key: tlsKey ?? '', cert: tlsCert ?? '' } : {}),
    disabledCommands: [...(listen.tls ? [] : ['STARTTLS']), ...(listen.auth ? [] : ['AUTH'])],
    // Without TLS the contract allows a password only on loopback.
    ...(listen.auth
      ? { authMethods: ['PLAIN', 'LOGIN'], allowInsecureAuth: !listen.tls }
      : { authOptional: true }),
    onAuth(auth, _session, callback) {
      const ok =
        listen.auth !== undefined &&
        password !== undefined &&
        same(auth.username ?? '', listen.auth.username) &&
        same(auth.password ?? '', password);
      if (!ok) return callback(smtpError(535, '5.7.8 authentication failed'));
      callback(null, { user: listen.auth!.username });
    },
    onMailFrom(_address, session, callback) {
      if (stopping) return callback(smtpError(421, '4.3.2 the listener is stopping, try later'));
      if (listen.tls && !session.secure)
        return callback(smtpError(530, '5.7.0 must issue a STARTTLS command first'));
      callback();
    },
    onRcptTo(address, _session, callback) {
      if (!accepts.has(address.address.toLowerCase()))
        return callback(smtpError(550, `5.1.1 no such mailbox here: ${address.address}`));
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      let bytes = 0;
      stream.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        // Past the cap the rest is read and dropped: the message is refused whole at its end.
        if (bytes <= listen.maxMessageBytes) chunks.push(chunk);
      });
      stream.on('end', () => {
        if (stream.sizeExceeded || bytes > listen.maxMessageBytes) {
          return callback(smtpError(552, '5.3.4 message exceeds the fixed maximum size'));
        }
        const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
        const work = deliver(Buffer.concat(chunks), mailFrom).then(
          (reply) => callback(null, reply),
          (error: unknown) => callback(asSmtpError(error)),
        );
        inFlight.add(work);
        void work.finally(() => inFlight.delete(work));
      });
    },
  };

  // Harmless twice: the sink keys each event on its Message-ID, so a relay's retry of a
  // message whose 250 it never saw finds the run made the first time and makes none.
  async function deliver(raw: Buffer, mailFrom: string): Promise<string> {
    const read = await readInboundEmail(raw, { mailFrom }, account);
    if (read.kind === 'refused') throw smtpError(read.responseCode, read.message);
    if (read.kind === 'ignored') {
      await sink.messages({ events: [], ignored: 1 });
      return `2.0.0 accepted, not answered (${read.reason})`;
    }
    const { runs } = await sink.messages({ events: [read.event], ignored: 0 });
    return `2.0.0 accepted as run ${runs[0] ?? ''}`.trim();
  }

  const server = new SMTPServer(options);
  // smtp-server emits each client connection's own failures (a reset, a timeout) here too:
  // they end that delivery, which the relay retries, and say nothing about the listener.
  server.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error) => reject(error);
    server.server.once('error', failed);
    server.listen(listen.port, listen.host, () => {
      server.server.off('error', failed);
      resolve();
    });
  });
  server.server.on('error', (error) => {
    sink.state('error', { code: 'CHANNEL_UNAVAILABLE', message: error.message });
  });
  sink.state('running');

  let stopped: Promise<void> | null = null;
  return {
    stop() {
      stopped ??= (async () => {
        stopping = true;
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.allSettled([...inFlight]);
      })();
      return stopped;
    },
  };
}

/** Timing-safe equality of two strings. */
function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * The SMTP reply for a failed delivery: an event the schema refuses is permanent (554), any
 * other failure (the database away, a bug) temporary (451), so the relay tries again later.
 */
function asSmtpError(error: unknown): Error {
  if (typeof (error as { responseCode?: unknown }).responseCode === 'number') return error as Error;
  if (error instanceof ContractViolationError)
    return smtpError(554, `5.6.0 the message cannot be taken: ${error.message}`.slice(0, 500));
  const code = error instanceof AppError ? error.code : 'ERROR';
  return smtpError(451, `4.3.0 temporary failure (${code}), try again later`);
}
