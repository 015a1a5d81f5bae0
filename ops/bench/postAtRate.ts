import { Agent, request } from 'node:http';
import type { PostTarget } from './postRuns.ts';

/** What one open-loop sender saw, answer by answer. */
export type RateReport = {
  sent: number;
  /** 2xx answers, with the run each one named. */
  accepted: number;
  runIds: string[];
  /** 429 / 503 answers that carried a `Retry-After`. */
  refusedWithRetryAfter: number;
  /** Any other non-2xx answer (and 429 / 503 without `Retry-After`), by status. */
  refusedOther: Record<string, number>;
  /** Client-side time from send to the answer, ms, for every answer. */
  answerMs: number[];
};

/**
 * Sends request `i` at `i / rate` seconds for `seconds`, whatever is still in flight (an
 * open loop: a slow server shows as latency, not as a slower client), and records each
 * answer's status, `Retry-After` and run id. A refused request is not retried: it counts as
 * refused, which is what the client was told.
 */
export async function postAtRate(
  target: PostTarget,
  { rate, seconds, connections = 256 }: { rate: number; seconds: number; connections?: number },
): Promise<RateReport> {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const report: RateReport = {
    sent: 0,
    accepted: 0,
    runIds: [],
    refusedWithRetryAfter: 0,
    refusedOther: {},
    answerMs: [],
  };
  const count = Math.round(rate * seconds);
  const started = performance.now();
  const inFlight: Promise<void>[] = [];
  const postOne = async (i: number) => {
    const sent = performance.now();
    report.sent += 1;
    const answer = await send(agent, target, target.body(i)).catch(() => null);
    report.answerMs.push(performance.now() - sent);
    if (answer && answer.status >= 200 && answer.status < 300) {
      report.accepted += 1;
      const id = /"run_id":"([^"]+)"/.exec(answer.body)?.[1];
      if (id) report.runIds.push(id);
      return;
    }
    if (answer && (answer.status === 429 || answer.status === 503) && answer.retryAfter) {
      report.refusedWithRetryAfter += 1;
      return;
    }
    const key = answer ? String(answer.status) : 'error';
    report.refusedOther[key] = (report.refusedOther[key] ?? 0) + 1;
  };
  try {
    for (let fired = 0; fired < count;) {
      const due = Math.min(count, Math.floor(((performance.now() - started) * rate) / 1000) + 1);
      while (fired < due) inFlight.push(postOne(fired++));
      if (fired < count) await new Promise((r) => setTimeout(r, 2));
    }
    await Promise.all(inFlight);
  } finally {
    agent.destroy();
  }
  return report;
}

function send(
  agent: Agent,
  target: PostTarget,
  body: string,
): Promise<{ status: number; retryAfter: boolean; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        host: '127.0.0.1',
        port: target.port,
        method: 'POST',
        path: target.path,
        headers: {
          ...target.headers,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
        timeout: 60_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: /^\d+$/.test(String(res.headers['retry-after'] ?? '')),
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}
