import { parseArgs } from 'node:util';
import { z } from 'zod';

/** What one `npm run chaos` invocation does; every field has a flag of the same name. */
export const ChaosOptions = z
  .strictObject({
    /** Runs started per second, API and Telegram together. @defaultValue 30 */
    rate: z.coerce.number().positive().max(2000).default(30),
    /** How long the load (and the faults) last, in seconds. @defaultValue 120 */
    duration: z.coerce.number().positive().max(3600).default(120),
    /**
     * The longest wait for quiescence after the load stops, in seconds. A chunk whose sender
     * was killed mid-call is only settled when its 60 s lease runs out, so keep this above that.
     * @defaultValue 150
     */
    drain: z.coerce.number().positive().max(3600).default(150),
    /** How long no new message must arrive before the platform counts as quiet, in seconds. @defaultValue 5 */
    quiet: z.coerce.number().positive().max(600).default(5),
    /** Share of runs sent through the Telegram webhook. @defaultValue 0.3 */
    telegram: z.coerce.number().min(0).max(1).default(0.3),
    /** Share of runs sent through the Slack Events API webhook. @defaultValue 0.2 */
    slack: z.coerce.number().min(0).max(1).default(0.2),
    /**
     * Share of runs dispatched on the Discord Gateway; the rest, after Telegram's, Slack's and
     * Discord's, go through the API. @defaultValue 0.2
     */
    discord: z.coerce.number().min(0).max(1).default(0.2),
    /** Share of webhooks sent again as duplicates (half at once, half later). @defaultValue 0.1 */
    duplicates: z.coerce.number().min(0).max(1).default(0.1),
    /**
     * AWOOOP_WORKER_CONCURRENCY of each stage worker. The platform's default (16) gives each of
     * the five workers a pool of 18: with web's 20 that is more than a stock Postgres's 100
     * connections, and the rest is shared with whoever else uses the server. @defaultValue 8
     */
    concurrency: z.coerce.number().int().min(1).max(100).default(8),
    /** Seconds between two worker kills; 0 kills none. @defaultValue 4 */
    'kill-every': z.coerce.number().min(0).max(3600).default(4),
    /** Skips the Redis restart, the FLUSHALL and the Postgres connection kill. @defaultValue false */
    'no-infra-faults': z.boolean().default(false),
    /** Seed of the random choices (which worker, which webhook is duplicated). Default: random. */
    seed: z.coerce.number().int().nonnegative().optional(),
    /** The database to create (dropped first, and after unless --keep). @defaultValue awooop_chaos */
    database: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/)
      .default('awooop_chaos'),
    /** Keeps the database (and the process log) for inspection. @defaultValue false */
    keep: z.boolean().default(false),
    /** Prints one JSON object on stdout (the summary line goes to stderr). @defaultValue false */
    json: z.boolean().default(false),
    help: z.boolean().default(false),
  })
  .refine((o) => o.telegram + o.slack + o.discord <= 1, {
    path: ['discord'],
    message: 'the Telegram, Slack and Discord shares add up to more than 1',
  });
export type ChaosOptions = z.infer<typeof ChaosOptions>;

/** The flags {@link parseChaosOptions} reads. */
export const CHAOS_USAGE = `npm run chaos -- [options]

  --rate N            runs started per second (default 30)
  --duration S        seconds of load and faults (default 120)
  --drain S           longest wait for quiescence after the load (default 150)
  --quiet S           seconds without a new message that count as quiet (default 5)
  --telegram F        share of runs sent through the Telegram webhook (default 0.3)
  --slack F           share sent through the Slack Events API webhook (default 0.2)
  --discord F         share dispatched on the Discord Gateway (default 0.2; the rest go
                      through the HTTP API)
  --duplicates F      share of webhooks re-sent as duplicates (default 0.1)
  --concurrency N     AWOOOP_WORKER_CONCURRENCY of each stage worker (default 8)
  --kill-every S      seconds between worker kills, 0 for none (default 4)
  --no-infra-faults   no Redis restart, FLUSHALL or Postgres connection kill
  --seed N            seed of the random choices
  --database NAME     database to create and drop (default awooop_chaos)
  --keep              keep the database and the process log
  --json              print one JSON object on stdout`;

/** Parses the command line; throws a readable error naming the bad flag. */
export function parseChaosOptions(argv: readonly string[]): ChaosOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      rate: { type: 'string' },
      duration: { type: 'string' },
      drain: { type: 'string' },
      quiet: { type: 'string' },
      telegram: { type: 'string' },
      slack: { type: 'string' },
      discord: { type: 'string' },
      duplicates: { type: 'string' },
      concurrency: { type: 'string' },
      'kill-every': { type: 'string' },
      'no-infra-faults': { type: 'boolean' },
      seed: { type: 'string' },
      database: { type: 'string' },
      keep: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const parsed = ChaosOptions.safeParse(values);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid options:\n  ${issues.join('\n  ')}`);
  }
  return parsed.data;
}
