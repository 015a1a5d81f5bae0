// The reservation functions of migrations 0014 and 0015 on their own: a step's key admits one hold
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

async function newRun(project = PROJECT): Promise<string> {
  const owner = await db().owner();
  const eventId = randomUUID();
  const id = randomUUID();
  const trace = randomUUID().replaceAll('-', '');
  await owner.query(
    `INSERT INTO conversation_events (event_id, project_id, channel, account_id, external_event_id, trace_id, body)
     VALUES ($1, $2, 'api', 'api', $4, $3, '{}')`,
    [eventId, project, trace, eventId],
  );
  await owner.query(
    `INSERT INTO runs (run_id, project_id, event_id, trace_id, channel, account_id, conversation_key, deadline_at)
     VALUES ($1, $2, $3, $4, 'api', 'api', 'c', now() + interval '1 hour')`,
    [id, project, eventId, trace],
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

// A project whose runs have no day or month limit keeps no period rows, so its steps never
// queue on them; the first limited step of a period makes them from the period's reservations,
// after the unlimited ones still open have committed.
describe('period rows only where a limit reads them', () => {
  const FREE = 'free';
  const freeStep = (over: Partial<ReservationInput> = {}): ReservationInput =>
    step({ projectId: FREE, limits: {}, ...over });
  const reserveFree = (input: ReservationInput) =>
    withProject(db().pool, FREE, (tx) => reserveBudget(tx, input));
  const periods = async () => {
    const owner = await db().owner();
    const { rows } = await owner.query<{ period: string; reserved: string; spent: string }>(
      `SELECT period, tokens_reserved AS reserved, tokens_spent AS spent FROM budget_periods
        WHERE project_id = $1 ORDER BY period`,
      [FREE],
    );
    return rows.map((r) => [r.period, Number(r.reserved), Number(r.spent)]);
  };
  let a: string;
  let b: string;
  let c: string;

  beforeAll(async () => {
    const owner = await db().owner();
    await owner.query(
      `INSERT INTO projects (project_id, display_name, created_by) VALUES ($1, 'Free', 'test')`,
      [FREE],
    );
    a = await newRun(FREE);
    b = await newRun(FREE);
    c = await newRun(FREE);
  });

  it('writes no period row for a step checked against no project limit', async () => {
    expect((await reserveFree(freeStep({ runId: a }))).outcome).toBe('reserved');
    expect((await reserveFree(freeStep({ runId: a }))).outcome).toBe('held');
    const settled = await withProject(db().pool, FREE, (tx) =>
      settleBudget(tx, {
        projectId: FREE,
        runId: a,
        stepKey: 'model:0',
        subject: 'openai_compatible/m',
        inputTokens: 60,
        outputTokens: 20,
        usd: 0.1,
        unpriced: false,
      }),
    );
    expect(settled).toEqual([]);
    expect((await reserveFree(freeStep({ runId: b }))).outcome).toBe('reserved');
    expect(await periods()).toEqual([]);
  });

  it('makes the rows at the first limited step from what the period already holds and spent', async () => {
    // a's 80 tokens spent and b's 100 held: 100 more passes a day limit of 250
    expect(await reserveFree(freeStep({ runId: c, limits: { dailyTokens: 250 } }))).toEqual({
      outcome: 'exceeded',
      limitName: 'dailyTokens',
    });
    expect(await periods()).toEqual([
      [`day:${DAY}`, 100, 80],
      ['month:2026-12', 100, 80],
    ]);
    // from now on every step of the project keeps them, limited or not
    expect((await reserveFree(freeStep({ runId: c, stepKey: 'model:1', tokens: 5 }))).outcome).toBe(
      'reserved',
    );
    expect(await periods()).toEqual([
      [`day:${DAY}`, 105, 80],
      ['month:2026-12', 105, 80],
    ]);
    const released = await withProject(db().pool, FREE, (tx) =>
      releaseRunBudget(tx, { projectId: FREE, runId: b }),
    );
    expect(released).toBe(1);
    expect(await periods()).toEqual([
      [`day:${DAY}`, 5, 80],
      ['month:2026-12', 5, 80],
    ]);
  });

  it('counts an unlimited hold still uncommitted when the rows are made', async () => {
    const owner = await db().owner();
    await owner.query(`DELETE FROM budget_periods WHERE project_id = $1`, [FREE]);
    let commit!: () => void;
    const gate = new Promise<void>((resolve) => (commit = resolve));
    let held!: () => void;
    const holding = new Promise<void>((resolve) => (held = resolve));
    const open = withProject(db().pool, FREE, async (tx) => {
      const outcome = await reserveBudget(
        tx,
        freeStep({ runId: a, stepKey: 'model:7', tokens: 160 }),
      );
      held();
      await gate;
      return outcome;
    });
    await holding;
    let settledFirst = false;
    const limited = reserveFree(
      freeStep({ runId: c, stepKey: 'model:2', tokens: 10, limits: { dailyTokens: 250 } }),
    ).finally(() => (settledFirst = true));
    // the limited step waits for the open hold's transaction…
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(settledFirst).toBe(false);
    commit();
    expect((await open).outcome).toBe('reserved');
    // …and counts it: 80 spent + 5 + 160 held + 10 passes 250
    expect(await limited).toEqual({ outcome: 'exceeded', limitName: 'dailyTokens' });
    expect(await periods()).toEqual([
      [`day:${DAY}`, 165, 80],
      ['month:2026-12', 165, 80],
    ]);
  });
});
