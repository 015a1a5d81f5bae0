// The reservation functions of migration 0010 on their own: a step's key admits one hold
// however often (or however concurrently) it is reserved, a settle counts once, a release
// gives a hold back once, and a released step reserved again (a retried run) holds again.
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  releaseRunBudget,
  reserveBudget,
  settleBudget,
  type ReservationInput,
} from '../../db/budgets.ts';
import { withProject } from '../../db/withProject.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';

const db = useTestDatabase();
const PROJECT = 'ledger';
const DAY = '2026-12-03';
let runId: string;
let otherRun: string;

async function newRun(): Promise<string> {
  const owner = await db().owner();
  const eventId = randomUUID();
  const id = randomUUID();
  const trace = randomUUID().replaceAll('-', '');
  await owner.query(
    `INSERT INTO conversation_events (event_id, project_id, channel, account_id, external_event_id, trace_id, body)
     VALUES ($1, $2, 'api', 'api', $4, $3, '{}')`,
    [eventId, PROJECT, trace, eventId],
  );
  await owner.query(
    `INSERT INTO runs (run_id, project_id, event_id, trace_id, channel, account_id, conversation_key, deadline_at)
     VALUES ($1, $2, $3, $4, 'api', 'api', 'c', now() + interval '1 hour')`,
    [id, PROJECT, eventId, trace],
  );
  return id;
}

beforeAll(async () => {
  const owner = await db().owner();
  await owner.query(
    `INSERT INTO projects (project_id, display_name, created_by) VALUES ($1, 'Ledger', 'test')`,
    [PROJECT],
  );
  runId = await newRun();
  otherRun = await newRun();
});

const step = (over: Partial<ReservationInput> = {}): ReservationInput => ({
  projectId: PROJECT,
  runId,
  stepKey: 'model:0',
  kind: 'model',
  agent: 'helper',
  subject: 'openai_compatible/m',
  day: DAY,
  tokens: 100,
  usd: 0.5,
  unpriced: false,
  limits: { dailyTokens: 250 },
  ...over,
});
const reserve = (input: ReservationInput) =>
  withProject(db().pool, PROJECT, (tx) => reserveBudget(tx, input));

async function day() {
  const owner = await db().owner();
  const { rows } = await owner.query<{ tokens_reserved: string; tokens_spent: string }>(
    `SELECT tokens_reserved, tokens_spent FROM budget_periods WHERE project_id = $1 AND period = $2`,
    [PROJECT, `day:${DAY}`],
  );
  return { reserved: Number(rows[0]!.tokens_reserved), spent: Number(rows[0]!.tokens_spent) };
}

describe('budget reservations', () => {
  it('holds a step once, however many times and however concurrently it is reserved', async () => {
    const outcomes = await Promise.all([reserve(step()), reserve(step()), reserve(step())]);
    expect(outcomes.map((o) => o.outcome).sort()).toEqual(['held', 'held', 'reserved']);
    expect(await day()).toEqual({ reserved: 100, spent: 0 });
  });

  it("refuses a step past the day's limit, naming it, and writes nothing", async () => {
    expect(await reserve(step({ runId: otherRun, tokens: 151 }))).toEqual({
      outcome: 'exceeded',
      limitName: 'dailyTokens',
    });
    expect(await day()).toEqual({ reserved: 100, spent: 0 });
  });

  it('settles once, from the usage given', async () => {
    const settle = () =>
      withProject(db().pool, PROJECT, (tx) =>
        settleBudget(tx, {
          projectId: PROJECT,
          runId,
          stepKey: 'model:0',
          subject: 'openai_compatible/m',
          inputTokens: 30,
          outputTokens: 20,
          usd: 0.1,
          unpriced: false,
        }),
      );
    expect((await settle()).map((t) => [t.period, t.tokens])).toEqual([
      [`day:${DAY}`, 50],
      ['month:2026-12', 50],
    ]);
    expect(await settle()).toEqual([]);
    expect(await day()).toEqual({ reserved: 0, spent: 50 });
    expect((await reserve(step())).outcome).toBe('settled');
  });

  it('releases a run’s open holds once, and a released step reserved again holds again', async () => {
    expect((await reserve(step({ runId: otherRun, stepKey: 'model:1' }))).outcome).toBe('reserved');
    const release = () =>
      withProject(db().pool, PROJECT, (tx) =>
        releaseRunBudget(tx, { projectId: PROJECT, runId: otherRun }),
      );
    expect(await release()).toBe(1);
    expect(await release()).toBe(0);
    expect(await day()).toEqual({ reserved: 0, spent: 50 });
    // `runs retry` brings the run back to the same step: it must hold (and be checked) again.
    expect((await reserve(step({ runId: otherRun, stepKey: 'model:1' }))).outcome).toBe('reserved');
    expect(await day()).toEqual({ reserved: 100, spent: 50 });
  });

  it('counts tool calls against the run, not the periods', async () => {
    const tool = (callIndex: number) =>
      reserve(
        step({
          stepKey: `tool:0:${callIndex}`,
          kind: 'tool',
          subject: 'ops.lookup',
          tokens: 0,
          usd: 0,
          limits: { perRunToolCalls: 2 },
        }),
      );
    expect((await tool(0)).outcome).toBe('reserved');
    expect((await tool(0)).outcome).toBe('settled');
    expect((await tool(1)).outcome).toBe('reserved');
    expect(await tool(2)).toEqual({ outcome: 'exceeded', limitName: 'perRunToolCalls' });
    expect(await day()).toEqual({ reserved: 100, spent: 50 });
  });
});
