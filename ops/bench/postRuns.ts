import { Agent, request } from 'node:http';

/** Where and what to post. */
export type PostTarget = {
  port: number;
  path: string;
  headers: Record<string, string>;
  /** The JSON body of the `i`-th request. */
  body: (i: number) => string;
};

/** How the posts went, as the client saw them. */
export type PostReport = {
  accepted: number;
  refused: number;
  /** Status codes of refused requests, with counts, and transport errors under `error`. */
  refusals: Record<string, number>;
  /** Client-side time from send to the 2xx answer, ms. */
  ackMs: number[];
  /** Wall time from the first send to the last answer, ms. */
  wallMs: number;
};

/**
 * Posts `count` requests over a keep-alive agent on loopback. Burst (no `rate`): `connections`
 * requests in flight, each followed by the next as soon as it is answered. Fixed rate: request
 * `i` is sent at `i / rate` seconds whatever is still in flight (an open loop, so a slow server
 * shows as latency, not as a slower client), over at most `connections` sockets.
 */
export async function postRuns(
  target: PostTarget,
  { count, connections, rate }: { count: number; connections: number; rate?: number | undefined },
): Promise<PostReport> {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const report: PostReport = { accepted: 0, refused: 0, refusals: {}, ackMs: [], wallMs: 0 };
  const started = performance.now();
  const postOne = async (i: number) => {
    const sent = performance.now();
    const status = await send(agent, target, target.body(i)).catch(() => 'error' as const);
    if (typeof status === 'number' && status >= 200 && status < 300) {
      report.accepted += 1;
      report.ackMs.push(performance.now() - sent);
    } else {
      report.refused += 1;
      report.refusals[String(status)] = (report.refusals[String(status)] ?? 0) + 1;
    }
  };
  try {
    if (rate === undefined) {
      let next = 0;
      const loop = async () => {
        while (next < count) await postOne(next++);
      };
      await Promise.all(Array.from({ length: Math.min(connections, count) }, loop));
    } else {
      const inFlight: Promise<void>[] = [];
      for (let fired = 0; fired < count;) {
        const due = Math.min(count, Math.floor(((performance.now() - started) * rate) / 1000) + 1);
        while (fired < due) inFlight.push(postOne(fired++));
        if (fired < count) await new Promise((r) => setTimeout(r, 1));
      }
      await Promise.all(inFlight);
    }
  } finally {
    agent.destroy();
  }
  report.wallMs = performance.now() - started;
  return report;
}

function send(agent: Agent, target: PostTarget, body: string): Promise<number> {
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
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
