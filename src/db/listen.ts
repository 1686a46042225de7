// The LISTEN connection: one connection of its own per channel, kept open. It reconnects
// after any loss, and a heartbeat query every `heartbeatMs` (answered within that time)
// detects a connection that died silently. `state(false)` is called whenever notifications
// may have been missed (lost, or not yet listening); `state(true)` once LISTEN is in place.
import pg from 'pg';
import { ident } from './connection';

/** A LISTEN connection kept by Db.listen(). */
export interface ChannelListener {
  /** The server process of the listening connection (tests terminate it). */
  readonly backendPid: number | undefined;
  /** Drops the connection (as if lost: state(false)) and connects again, to the server the connection string names now. */
  reconnect(): void;
  close(): Promise<void>;
}

export interface ChannelHandlers {
  message(payload: string): void;
  state(listening: boolean): void;
}

export function listenChannel(
  config: { connectionString: string | (() => string); application_name?: string }, channel: string, handlers: ChannelHandlers,
  opts: { heartbeatMs?: number; retryMs?: number } = {},
): ChannelListener {
  const { connectionString, application_name } = config;
  const heartbeatMs = opts.heartbeatMs ?? 1000;
  const retryMs = opts.retryMs ?? 250;
  let closed = false;
  let listening = false;
  let client: pg.Client | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let retry: NodeJS.Timeout | undefined;
  const setListening = (v: boolean) => {
    if (listening === v) return;
    listening = v;
    handlers.state(v);
  };
  const lost = (c: pg.Client) => {
    if (c !== client) return;
    client = undefined;
    clearInterval(heartbeat);
    setListening(false);
    c.end().catch(() => undefined);
    if (!closed) {
      retry = setTimeout(connect, retryMs);
      retry.unref();
    }
  };
  const connect = async () => {
    if (closed) return;
    const c = new pg.Client({
      connectionString: typeof connectionString === 'function' ? connectionString() : connectionString, application_name: `${application_name ?? 'atelier-reviews'}-listener`,
      query_timeout: heartbeatMs, connectionTimeoutMillis: Math.max(heartbeatMs, 2000),
    });
    client = c;
    c.on('error', () => lost(c));
    c.on('end', () => lost(c));
    c.on('notification', (n) => {
      if (n.channel === channel) handlers.message(n.payload ?? '');
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${ident(channel)}`);
      if (client !== c) return;
      heartbeat = setInterval(() => void c.query('SELECT 1').catch(() => lost(c)), heartbeatMs);
      heartbeat.unref();
      setListening(true);
    } catch {
      lost(c);
    }
  };
  void connect();
  return {
    reconnect() {
      if (client) lost(client);
    },
    get backendPid() {
      return (client as unknown as { processID?: number } | undefined)?.processID;
    },
    async close() {
      closed = true;
      clearTimeout(retry);
      clearInterval(heartbeat);
      const c = client;
      client = undefined;
      listening = false;
      await c?.end().catch(() => undefined);
    },
  };
}
