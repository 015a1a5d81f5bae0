import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

/** What a client sent to the fake Gateway, in order. */
export type GatewayReceived =
  | { op: 'identify'; token: string; intents: number; shard: unknown }
  | { op: 'resume'; token: string; sessionId: string; seq: number | null }
  | { op: 'heartbeat'; seq: number | null };

/** A local stand-in for Discord's Gateway (v10, JSON encoding, no compression). */
export type FakeDiscordGateway = {
  /** The `ws://` URL to connect to (also sent as READY's `resume_gateway_url`). */
  url: string;
  /** Everything clients sent: IDENTIFY, RESUME and HEARTBEAT payloads. */
  received: GatewayReceived[];
  /** How many WebSocket connections were opened so far. */
  connections(): number;
  /** Whether a client is connected and has identified or resumed. */
  ready(): boolean;
  /**
   * Sends a dispatch (op 0) with the next sequence number and keeps it in the session's log,
   * so a RESUME from an earlier sequence replays it. Returns the sequence number.
   */
  dispatch(t: string, d: unknown): number;
  /** Cuts the connection without a close frame (a network drop: the client sees 1006). */
  drop(): void;
  /** Asks the client to reconnect and resume (op 7 RECONNECT). */
  reconnect(): void;
  /** Tells the client its session is invalid (op 9), resumable or not. */
  invalidateSession(resumable: boolean): void;
  close(): Promise<void>;
};

/**
 * Starts a fake Discord Gateway on a local port. A connection gets HELLO (op 10, with
 * `heartbeat_interval`); IDENTIFY (op 2) with the right token starts a session and answers the
 * READY dispatch (the bot user, `session_id`, `resume_gateway_url`), a wrong token closes with
 * 4004; HEARTBEAT (op 1) is answered HEARTBEAT_ACK (op 11); RESUME (op 6) of the current
 * session replays every dispatch after the `seq` it names, in order, then RESUMED; of an
 * unknown session, INVALID_SESSION (op 9, `d: false`). Dispatches carry increasing `s`.
 */
export async function startDiscordGateway({
  token,
  botUser = { id: '1100000000000000001', username: 'awooop' },
  heartbeatIntervalMs = 41_250,
}: {
  token: string;
  botUser?: { id: string; username: string };
  heartbeatIntervalMs?: number;
}): Promise<FakeDiscordGateway> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  const received: GatewayReceived[] = [];
  /** The one session this bot has: its id and every dispatch sent in it, by sequence. */
  let session: { id: string; log: { s: number; t: string; d: unknown }[] } | null = null;
  let seq = 0;
  let socket: WebSocket | null = null;
  let authed = false;
  let opened = 0;

  const send = (ws: WebSocket, payload: unknown) => ws.send(JSON.stringify(payload));

  wss.on('connection', (ws) => {
    opened += 1;
    socket = ws;
    authed = false;
    send(ws, { op: 10, d: { heartbeat_interval: heartbeatIntervalMs }, s: null, t: null });
    ws.on('message', (raw) => {
      let payload: { op?: number; d?: Record<string, unknown> | number | null };
      try {
        payload = JSON.parse(Buffer.from(raw as Buffer).toString('utf8')) as typeof payload;
      } catch {
        ws.close(4002, 'Decode error');
        return;
      }
      const d = (payload.d ?? {}) as Record<string, unknown>;
      switch (payload.op) {
        case 1: {
          received.push({ op: 'heartbeat', seq: typeof payload.d === 'number' ? payload.d : null });
          send(ws, { op: 11, d: null, s: null, t: null });
          return;
        }
        case 2: {
          received.push({
            op: 'identify',
            token: String(d.token),
            intents: Number(d.intents),
            shard: d.shard,
          });
          if (d.token !== token) {
            ws.close(4004, 'Authentication failed.');
            return;
          }
          authed = true;
          seq = 0;
          session = { id: randomBytes(16).toString('hex'), log: [] };
          dispatchOn(ws, 'READY', {
            v: 10,
            user_settings: {},
            user: {
              ...botUser,
              discriminator: '0',
              global_name: null,
              avatar: null,
              bot: true,
              verified: true,
              flags: 0,
              mfa_enabled: false,
            },
            guilds: [],
            session_id: session.id,
            resume_gateway_url: url,
            session_type: 'normal',
            shard: [0, 1],
            application: { id: botUser.id, flags: 0 },
          });
          return;
        }
        case 6: {
          const asked = typeof d.seq === 'number' ? d.seq : null;
          received.push({
            op: 'resume',
            token: String(d.token),
            sessionId: String(d.session_id),
            seq: asked,
          });
          if (d.token !== token) {
            ws.close(4004, 'Authentication failed.');
            return;
          }
          if (!session || d.session_id !== session.id) {
            send(ws, { op: 9, d: false, s: null, t: null });
            return;
          }
          authed = true;
          for (const event of session.log) {
            if (asked === null || event.s > asked) {
              send(ws, { op: 0, t: event.t, s: event.s, d: event.d });
            }
          }
          dispatchOn(ws, 'RESUMED', {});
          return;
        }
        default:
          return;
      }
    });
    ws.on('close', () => {
      if (socket === ws) {
        socket = null;
        authed = false;
      }
    });
  });

  function dispatchOn(ws: WebSocket | null, t: string, d: unknown): number {
    seq += 1;
    if (t !== 'READY' && t !== 'RESUMED') session?.log.push({ s: seq, t, d });
    if (ws && ws.readyState === ws.OPEN) send(ws, { op: 0, t, s: seq, d });
    return seq;
  }

  return {
    url,
    received,
    connections: () => opened,
    ready: () => socket !== null && authed,
    dispatch: (t, d) => dispatchOn(authed ? socket : null, t, d),
    drop() {
      socket?.terminate();
      socket = null;
      authed = false;
    },
    reconnect() {
      if (socket) send(socket, { op: 7, d: null, s: null, t: null });
    },
    invalidateSession(resumable) {
      if (!resumable) session = null;
      if (socket) send(socket, { op: 9, d: resumable, s: null, t: null });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => resolve());
      }),
  };
}
