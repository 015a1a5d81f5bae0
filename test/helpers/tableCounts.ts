import type pg from 'pg';

/** Row counts of every table in the public schema: a fingerprint of "nothing changed". */
export async function tableCounts(owner: pg.Client): Promise<Record<string, number>> {
  const { rows } = await owner.query<{ table_name: string }>(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
  );
  const counts: Record<string, number> = {};
  for (const { table_name } of rows) {
    const r = await owner.query<{ n: string }>(`SELECT count(*) AS n FROM ${table_name}`);
    counts[table_name] = Number(r.rows[0]!.n);
  }
  return counts;
}
