import { describe, expect, it } from 'vitest';
import { REDACTED, SECRET_PATTERNS, redactSecrets } from '../../pipeline/sanitize/redactSecrets.ts';

// Credential-shaped strings are assembled at run time so no literal token sits in the tree.
const join = (...parts: string[]) => parts.join('');
const FAKE = {
  openai: join('sk-', 'abc123DEF456ghi789JKL012mno345pqr678'),
  openaiProject: join('sk-', 'proj-', 'Ab1_Cd2-Ef3Gh4Ij5Kl6Mn7Op8Qr9St0'),
  anthropic: join('sk-', 'ant-', 'api03-', 'AbCdEf0123456789GhIjKl_-MnOpQr'),
  aws: join('AKIA', 'IOSFODNN7EXAMPL1'),
  github: join('gh', 'p_', '0123456789abcdefghijABCDEFGHIJ012345'),
  githubServer: join('gh', 's_', 'Z'.repeat(30), '123456'),
  slack: join('xo', 'xb-', '123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx'),
  telegram: join('123456789', ':', 'AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1'),
  jwt: join(
    'eyJ',
    'hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9',
    '.eyJzdWIiOiIxMjM0NTY3ODkwIn0',
    '.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c',
  ),
  bearer: join('abcdef', '0123456789', 'ABCDEF.xyz'),
};

const redact = (text: string, known: readonly string[] = []) => redactSecrets(text, known);

describe('redactSecrets: credential patterns', () => {
  it('redacts an OpenAI key, classic and project-scoped', () => {
    expect(redact(`key ${FAKE.openai} end`)).toEqual({
      text: `key ${REDACTED} end`,
      redactions: 1,
    });
    expect(redact(`OPENAI_API_KEY=${FAKE.openaiProject}`).text).toBe(`OPENAI_API_KEY=${REDACTED}`);
  });

  it('redacts an Anthropic key', () => {
    expect(redact(`use ${FAKE.anthropic}.`)).toEqual({ text: `use ${REDACTED}.`, redactions: 1 });
  });

  it('redacts an AWS access key id', () => {
    expect(redact(`id=${FAKE.aws}`).text).toBe(`id=${REDACTED}`);
    expect(redact(`The key ${FAKE.aws} is old`).text).toBe(`The key ${REDACTED} is old`);
  });

  it('redacts GitHub tokens of every prefix', () => {
    expect(redact(`token ${FAKE.github} and ${FAKE.githubServer}`)).toEqual({
      text: `token ${REDACTED} and ${REDACTED}`,
      redactions: 2,
    });
  });

  it('redacts a Slack token', () => {
    expect(redact(`slack: ${FAKE.slack}`).text).toBe(`slack: ${REDACTED}`);
  });

  it('redacts a bot token', () => {
    expect(redact(`bot ${FAKE.telegram} here`)).toEqual({
      text: `bot ${REDACTED} here`,
      redactions: 1,
    });
    expect(redact(`https://api.telegram.org/bot${FAKE.telegram}/getMe`).text).toBe(
      `https://api.telegram.org/bot${REDACTED}/getMe`,
    );
  });

  it('redacts a JWT and keeps the sentence around it', () => {
    expect(redact(`Session ${FAKE.jwt}. Done`).text).toBe(`Session ${REDACTED}. Done`);
  });

  it('redacts a Bearer token but keeps the word Bearer', () => {
    expect(redact(`Authorization: Bearer ${FAKE.bearer}`).text).toBe(
      `Authorization: Bearer ${REDACTED}`,
    );
    expect(redact(`Authorization: Bearer ${FAKE.jwt}`)).toEqual({
      text: `Authorization: Bearer ${REDACTED}`,
      redactions: 1,
    });
  });

  it('redacts the body of a PEM private key block and keeps its armour lines', () => {
    const pem = [
      '-----BEGIN RSA PRIVATE KEY-----',
      'MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MqlnZ2bBMTLq',
      'a1b2c3d4e5f6g7h8i9j0==',
      '-----END RSA PRIVATE KEY-----',
    ].join('\n');
    expect(redact(`key:\n${pem}\nafter`).text).toBe(
      `key:\n-----BEGIN RSA PRIVATE KEY-----\n${REDACTED}\n-----END RSA PRIVATE KEY-----\nafter`,
    );
  });

  it('redacts a PEM private key cut off before its END line', () => {
    const text = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nMore';
    expect(redact(text).text).toBe(`-----BEGIN PRIVATE KEY-----\n${REDACTED}`);
  });

  it('leaves a public key or certificate alone', () => {
    const pem =
      '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----';
    expect(redact(pem)).toEqual({ text: pem, redactions: 0 });
  });

  it('redacts the password in a URL and keeps the rest of the URL', () => {
    expect(redact('db at postgres://app:s3cret-pw@db.internal:5432/app').text).toBe(
      `db at postgres://app:${REDACTED}@db.internal:5432/app`,
    );
  });

  it('redacts assignment values and keeps the key names', () => {
    const text = [
      'password=hunter2',
      'DB_PASSWORD=correct-horse-9',
      'api_key: a8f5f167f44f4964e6c998dee827110c',
      '"client_secret": "s3cr3t value"',
      "token = 'abc123xyz'",
      'https://example.com/cb?token=abc123&page=2',
      'X-Api-Key: 7f3a9b2c1d',
    ].join('\n');
    expect(redact(text)).toEqual({
      text: [
        `password=${REDACTED}`,
        `DB_PASSWORD=${REDACTED}`,
        `api_key: ${REDACTED}`,
        `"client_secret": "${REDACTED}"`,
        `token = '${REDACTED}'`,
        `https://example.com/cb?token=${REDACTED}&page=2`,
        `X-Api-Key: ${REDACTED}`,
      ].join('\n'),
      redactions: 7,
    });
  });

  it('redacts a bare word value that ends its line after a colon', () => {
    expect(redact('password: letmein\nuser: bob').text).toBe(`password: ${REDACTED}\nuser: bob`);
  });

  it('reports each vendor key once even inside an assignment', () => {
    expect(redact(`api_key: ${FAKE.openai}`)).toEqual({
      text: `api_key: ${REDACTED}`,
      redactions: 1,
    });
  });
});

describe('redactSecrets: leaves ordinary text alone', () => {
  const untouched = [
    'Reset your password: click the link in the email we sent.',
    'Keep it secret: share it with nobody. The token: expires after an hour.',
    'The bearer of bad news arrived. Basic JavaScript is enough here.',
    'See https://example.com/docs?page=2&sort=asc and https://github.com/org/repo/pull/42.',
    'Visit https://user@example.com/ and ftp://mirror.example.org/pub.',
    'The task-management-dashboard-component renders fine; risk-assessment-quarterly-report too.',
    'Call me at 10:30, ticket 123456:abc, version 1.2.3, sha 9f86d081884c7d659a2feaa0c55ad015.',
    'Max tokens: 4096. Use max_tokens=512 and tokens_used=12.',
  ];
  it.each(untouched)('keeps prose: %s', (text) => {
    expect(redact(text)).toEqual({ text, redactions: 0 });
  });

  const code = [
    'const token = req.headers.authorization;',
    'const token = await getToken(user);',
    'password: string;',
    'token: Option<String>,',
    'def login(user, password=None):',
    'client.login(token=token, api_key=API_KEY)',
    'password = user_input',
    'if password == "":',
    'headers = { Authorization: `Bearer ${token}` }',
    'secret = os.environ["APP_SECRET"]',
    'export GITHUB_TOKEN=$GITHUB_TOKEN',
    'password: ${DB_PASSWORD}',
    'api_key: "<your-api-key>"',
    'token: process.env.BOT_TOKEN,',
    'const isSecret = (x) => x.kind === "secret";',
  ];
  it.each(code)('keeps code: %s', (text) => {
    expect(redact(text)).toEqual({ text, redactions: 0 });
  });
});

describe('redactSecrets: known values', () => {
  it('redacts a known value even when embedded in a word or URL', () => {
    const value = 'Zq9-known-cred';
    expect(redact(`prefix${value}suffix and https://x.test/?k=${value}`, [value])).toEqual({
      text: `prefix${REDACTED}suffix and https://x.test/?k=${REDACTED}`,
      redactions: 2,
    });
  });

  it('ignores known values shorter than 6 characters', () => {
    expect(redact('the admin said hello', ['admin', 'hello'])).toEqual({
      text: 'the admin said hello',
      redactions: 0,
    });
  });

  it('covers overlapping values with one redaction and leaks no fragment', () => {
    expect(redact('xx abcdef12gh34 yy', ['abcdef12', 'ef12gh34'])).toEqual({
      text: `xx ${REDACTED} yy`,
      redactions: 1,
    });
  });

  it('prefers the longest value when one contains another', () => {
    expect(redact('a longsecret-value-2 b secret-v', ['secret-v', 'longsecret-value-2'])).toEqual({
      text: `a ${REDACTED} b ${REDACTED}`,
      redactions: 2,
    });
  });

  it('redacts the URL-encoded and JSON-escaped forms of a known value', () => {
    const value = 'p@ss/word"42';
    const text = `q=${encodeURIComponent(value)} json=${JSON.stringify({ v: value })}`;
    expect(redact(text, [value])).toEqual({
      text: `q=${REDACTED} json={"v":"${REDACTED}"}`,
      redactions: 2,
    });
  });

  it('does not re-redact its own marker when a known value is the word REDACTED', () => {
    expect(redact('say REDACTED twice: REDACTED', ['REDACTED'])).toEqual({
      text: `say ${REDACTED} twice: ${REDACTED}`,
      redactions: 2,
    });
  });
});

describe('SECRET_PATTERNS', () => {
  it('exports global, index-carrying patterns with unique names', () => {
    const names = SECRET_PATTERNS.map((p) => p.name);
    expect(new Set(names).size).toBe(names.length);
    for (const pattern of SECRET_PATTERNS) expect(pattern.regex.flags).toMatch(/^(?=.*d)(?=.*g)/);
  });

  it('lets another module detect which kind of credential a text holds', () => {
    const found = (text: string) =>
      SECRET_PATTERNS.filter((p) =>
        [...text.matchAll(p.regex)].some((m) => p.accept === undefined || p.accept(m[0], m)),
      ).map((p) => p.name);
    expect(found(`x ${FAKE.aws} y`)).toEqual(['aws_access_key_id']);
    expect(found(`x ${FAKE.telegram} y`)).toEqual(['telegram_bot_token']);
    expect(found('nothing to see')).toEqual([]);
  });
});
