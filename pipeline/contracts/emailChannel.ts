import { z } from 'zod';
import { SecretRef } from './common.ts';

/** One mailbox address (`agent@example.com`). */
const EmailAddress = z.email({ error: 'must be an email address' }).max(254);

/** A sender the account answers: one address, or every address of a domain (`@example.com`). */
const AllowedSender = z.union([EmailAddress, z.string().regex(/^@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/)], {
  error: 'must be an email address or @domain',
});

const Host = z.string().min(1).max(253);
const Port = z.int().min(1).max(65_535);

/** SMTP AUTH credentials: a user name and a secret-ref password. */
const SmtpAuth = z.strictObject({ username: z.string().min(1).max(200), password: SecretRef });

/**
 * The fields of a `type: email` channel account (beside the common ones): the SMTP listener
 * that receives the account's mail, who may write to it, and the relay its answers go out by.
 */
export const emailChannelFields = {
  type: z.literal('email'),
  /** The account's address: accepted at RCPT TO, and the From of every answer. */
  address: EmailAddress,
  /** Further addresses the listener accepts mail for (RCPT TO); answers still come from `address`. */
  aliases: z.array(EmailAddress).max(50).default([]),
  /**
   * Whose mail is answered, by the message's From (the address the answer goes to): addresses
   * and `@domain`s, compared without regard to case. Mail from anyone else is refused (550).
   */
  allowSenders: z.array(AllowedSender).min(1).max(1000),
  /** The SMTP listener the organisation's MX or relay delivers the account's mail to. */
  listen: z.strictObject({
    /** The address it listens on: loopback unless set (`0.0.0.0` to be reached from outside). */
    host: Host.default('127.0.0.1'),
    port: Port,
    /** SMTP AUTH the delivering relay must pass (PLAIN or LOGIN); a wrong password is a 535. */
    auth: SmtpAuth.optional(),
    /**
     * A certificate for STARTTLS (or TLS from the first byte with `implicit`), PEM in secrets.
     * With it, mail is taken only over TLS.
     */
    tls: z
      .strictObject({ key: SecretRef, cert: SecretRef, implicit: z.boolean().default(false) })
      .optional(),
    /** The largest message taken, in bytes (SIZE is advertised; past it, 552). */
    maxMessageBytes: z.int().min(1024).max(100_000_000).default(10_000_000),
  }),
  /** The relay answers are submitted to (the organisation's outbound SMTP). */
  relay: z.strictObject({
    host: Host,
    port: Port.default(587),
    /** TLS from the first byte (port 465); otherwise STARTTLS is used where the relay offers it. */
    secure: z.boolean().default(false),
    auth: SmtpAuth.optional(),
  }),
  /** Email has no buttons: approvers are asked on another channel. */
  approvals: z
    .literal(false, { error: 'an email account cannot ask approvers (no buttons)' })
    .default(false),
};

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/;

/**
 * The email account's cross-field rule: a listener that asks for a password off loopback
 * must have TLS, or the relay's password would cross the network in clear.
 */
export function refineEmailChannel(
  channel: { listen: { host: string; auth?: unknown; tls?: unknown } },
  ctx: z.RefinementCtx,
): void {
  const { listen } = channel;
  if (listen.auth !== undefined && listen.tls === undefined && !LOOPBACK.test(listen.host)) {
    ctx.addIssue({
      code: 'custom',
      path: ['listen', 'tls'],
      message: `listen.auth on ${listen.host} needs listen.tls: the password would cross the network in clear (or listen on 127.0.0.1)`,
    });
  }
}
