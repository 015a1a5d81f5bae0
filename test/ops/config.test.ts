import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, databaseUrlFor, loadConfig, ownerUrl } from '../../ops/loadConfig.ts';
import { parseProcfile } from '../../ops/runDev.ts';

describe('config', () => {
  it('has working defaults for a fresh machine', () => {
    const config = loadConfig({});
    // no DATABASE_URL: the embedded server of `npm start` (see ownerUrl)
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config).toMatchObject({
      REDIS_URL: 'redis://127.0.0.1:6379',
      PORT: 3000,
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
    });
  });

  it('refuses to connect with no DATABASE_URL, naming it and saying to run npm start', () => {
    const config = loadConfig({});
    expect(() => ownerUrl(config)).toThrow(ConfigError);
    expect(() => databaseUrlFor(config, 'platform')).toThrow(/DATABASE_URL: not set.*npm start/);
    expect(ownerUrl(loadConfig({ DATABASE_URL: 'postgres://db/x' }))).toBe('postgres://db/x');
  });

  it('limits failed credential attempts by default, configurably', () => {
    expect(loadConfig({})).toMatchObject({
      AWOOOP_AUTH_FAILURES_PER_SOURCE: 20,
      AWOOOP_AUTH_FAILURES_PER_PROJECT: 100,
      AWOOOP_AUTH_FAILURE_WINDOW_S: 60,
    });
    expect(
      loadConfig({ AWOOOP_AUTH_FAILURES_PER_SOURCE: '5', AWOOOP_AUTH_FAILURE_WINDOW_S: '300' }),
    ).toMatchObject({ AWOOOP_AUTH_FAILURES_PER_SOURCE: 5, AWOOOP_AUTH_FAILURE_WINDOW_S: 300 });
    expect(() => loadConfig({ AWOOOP_AUTH_FAILURES_PER_PROJECT: '0' })).toThrow(
      /AWOOOP_AUTH_FAILURES_PER_PROJECT: /,
    );
  });

  it('bounds the backlog by default, configurably, and refuses a bound that is not a positive integer', () => {
    expect(loadConfig({})).toMatchObject({
      AWOOOP_MAX_BACKLOG: 5000,
      AWOOOP_PROJECT_MAX_BACKLOG: 1000,
      AWOOOP_BACKLOG_RETRY_AFTER_S: 10,
    });
    expect(loadConfig({ AWOOOP_MAX_BACKLOG: '300' })).toMatchObject({ AWOOOP_MAX_BACKLOG: 300 });
    expect(() => loadConfig({ AWOOOP_PROJECT_MAX_BACKLOG: '0' })).toThrow(
      /AWOOOP_PROJECT_MAX_BACKLOG: /,
    );
    expect(() => loadConfig({ AWOOOP_BACKLOG_RETRY_AFTER_S: 'soon' })).toThrow(
      /AWOOOP_BACKLOG_RETRY_AFTER_S: /,
    );
  });

  it('lets tenants read no env variable unless AWOOOP_ENV_SECRETS lists it, and never the platform own', () => {
    expect(loadConfig({}).AWOOOP_ENV_SECRETS).toEqual([]);
    expect(
      loadConfig({ AWOOOP_ENV_SECRETS: ' KUBE_TOKEN, OPS_API_KEY ,' }).AWOOOP_ENV_SECRETS,
    ).toEqual(['KUBE_TOKEN', 'OPS_API_KEY']);
    for (const name of ['AWOOOP_SECRET_KEY', 'DATABASE_URL']) {
      expect(() => loadConfig({ AWOOOP_ENV_SECRETS: `OK_NAME,${name}` })).toThrow(
        `AWOOOP_ENV_SECRETS: ${name} is the platform's own configuration`,
      );
    }
    expect(() => loadConfig({ AWOOOP_ENV_SECRETS: 'not a name' })).toThrow(/AWOOOP_ENV_SECRETS: /);
  });

  it('takes HOST as an address or a host name to listen on, and names it when it is neither', () => {
    for (const host of ['0.0.0.0', '::', '10.1.2.3', 'localhost', 'web-1.internal'])
      expect(loadConfig({ HOST: host }).HOST).toBe(host);
    for (const host of ['http://x', 'a b', '-x', 'x:80'])
      expect(() => loadConfig({ HOST: host }), host).toThrow(
        /HOST: must be an IP address or a host name/,
      );
  });

  it('names every bad variable and what is wrong with it', () => {
    expect(() =>
      loadConfig({ PORT: '70000', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud' }),
    ).toThrow(ConfigError);
    try {
      loadConfig({ PORT: '70000', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud' });
    } catch (error) {
      const issues = (error as ConfigError).issues;
      expect(issues).toEqual([
        'DATABASE_URL: must be a postgres:// URL',
        expect.stringMatching(/^PORT: /),
        expect.stringMatching(/^LOG_LEVEL: /),
      ]);
    }
  });

  it('never prints a secret, in an error or when serialized', () => {
    const key = 'k'.repeat(10);
    expect(() => loadConfig({ AWOOOP_SECRET_KEY: key })).toThrow(
      /AWOOOP_SECRET_KEY: must be 32 bytes/,
    );
    try {
      loadConfig({ AWOOOP_SECRET_KEY: key });
    } catch (error) {
      expect(String(error)).not.toContain(key);
    }
    const token = 't'.repeat(32);
    const secretKey = 'ab'.repeat(32);
    const config = loadConfig({
      AWOOOP_ADMIN_TOKEN: token,
      AWOOOP_SECRET_KEY: secretKey,
      DATABASE_URL: 'postgres://u:hunter2@db/awooop',
    });
    const json = JSON.stringify(config);
    expect(json).not.toContain(token);
    expect(json).not.toContain(secretKey);
    expect(json).not.toContain('hunter2');
    const shown = inspect(config);
    expect(shown).not.toContain(token);
    expect(shown).not.toContain(secretKey);
    expect(config.AWOOOP_ADMIN_TOKEN).toBe(token);
    const scrape = 's'.repeat(32);
    const withMetrics = loadConfig({ AWOOOP_METRICS_TOKEN: scrape });
    expect(JSON.stringify(withMetrics)).not.toContain(scrape);
    expect(inspect(withMetrics)).not.toContain(scrape);
    expect(() => loadConfig({ AWOOOP_METRICS_TOKEN: 'short' })).toThrow(
      /AWOOOP_METRICS_TOKEN: must be at least 24 characters/,
    );
  });

  it('takes a secret key as 64 hex characters or strict base64 of 32 bytes, nothing looser', () => {
    expect(() =>
      loadConfig({ AWOOOP_SECRET_KEY: randomBytes(32).toString('base64') }),
    ).not.toThrow();
    // Buffer's base64 skips the spaces and decodes the 43 letters left to 32 bytes
    const passphrase = 'correct horse battery staple correct horse batter';
    expect(Buffer.from(passphrase, 'base64')).toHaveLength(32);
    expect(() => loadConfig({ AWOOOP_SECRET_KEY: passphrase })).toThrow(/AWOOOP_SECRET_KEY/);
  });
});

describe('Procfile', () => {
  it("connects each process as its own login role, never as DATABASE_URL's owner", () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://owner:ownerpw@db:6543/awooop?sslmode=require',
    });
    expect(databaseUrlFor(config, 'app')).toBe(
      'postgres://awooop_runtime@db:6543/awooop?sslmode=require',
    );
    expect(databaseUrlFor(config, 'sweeper')).toBe(
      'postgres://awooop_sweeper_login@db:6543/awooop?sslmode=require',
    );
    expect(databaseUrlFor(config, 'platform')).toBe(
      'postgres://awooop_platform_login@db:6543/awooop?sslmode=require',
    );
    const given = loadConfig({
      AWOOOP_DB_RUNTIME_URL: 'postgres://awooop_runtime:runtimepw@db/awooop',
    });
    expect(databaseUrlFor(given, 'app')).toBe('postgres://awooop_runtime:runtimepw@db/awooop');
    expect(JSON.stringify(given)).not.toContain('runtimepw');
    expect(() => loadConfig({ AWOOOP_DB_PLATFORM_URL: 'nope' })).toThrow(
      /AWOOOP_DB_PLATFORM_URL: must be a postgres:\/\/ URL/,
    );
  });

  it('reads one process type per line', () => {
    expect(
      parseProcfile(
        '# comment\nweb: node ops/awooop.ts web\n\nresolve: node ops/awooop.ts worker resolve\n',
      ),
    ).toEqual([
      { name: 'web', command: 'node ops/awooop.ts web' },
      { name: 'resolve', command: 'node ops/awooop.ts worker resolve' },
    ]);
    expect(() => parseProcfile('web node x')).toThrow(/cannot read line/);
  });
});
