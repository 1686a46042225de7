// A TCP relay to PostgreSQL that a test can make swallow traffic on its open connections
// without closing them: a partition, or a failover that drops packets silently.
import net from 'node:net';

export interface SilentRelay {
  /** The database URL through the relay. */
  url: string;
  /** Swallow (true) or pass (false) the traffic of open connections; new ones are refused while silent if `refuseWhileSilent`. */
  silent: boolean;
  /** Closes every open connection (they are reopened through the relay). */
  dropConnections(): void;
  close(): void;
}

/**
 * `swallowQueries`: pass the connection's start-up and authentication, then swallow every
 * query (a server that accepts, logs in and never answers).
 */
/**
 * `terminateAtLogin`: the server ends each connection the moment it is ready (a FATAL 57P01,
 * as pg_terminate_backend sends, in the same packet as the login's ReadyForQuery).
 * `failQueriesWith`: a query whose text contains `match` is answered with this SQLSTATE and
 * message instead of reaching the server (a hot standby cancelling a read on a recovery
 * conflict), the connection staying usable.
 */
export async function silentRelay(databaseUrl: string, o: { refuseWhileSilent?: boolean; swallowQueries?: boolean; terminateAtLogin?: boolean; failQueriesWith?: { match: string; code: string; message: string } } = {}): Promise<SilentRelay> {
  const sockets = new Set<net.Socket>();
  const target = new URL(databaseUrl);
  const relay: SilentRelay = { url: '', silent: false, dropConnections: () => sockets.forEach((s) => s.destroy()), close: () => undefined };
  const server = net.createServer((client) => {
    if (relay.silent && o.refuseWhileSilent) return void client.destroy();
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    // A chunk from the client that opens with a simple ('Q') or extended ('P') query message.
    const query = (d: Buffer) => o.swallowQueries === true && (d[0] === 0x51 || d[0] === 0x50);
    const fail = o.failQueriesWith;
    client.on('data', (d) => {
      if (relay.silent || query(d)) return;
      // An extended-protocol query (Parse … Sync, or Bind … Sync for a prepared one) whose
      // text matches: answered ErrorResponse + ReadyForQuery, as the server would.
      if (fail && (d[0] === 0x50 || d[0] === 0x42) && d.includes(fail.match)) {
        const fields = Buffer.from(`SERROR\0VERROR\0C${fail.code}\0M${fail.message}\0\0`);
        const error = Buffer.alloc(5 + fields.length);
        error[0] = 0x45;
        error.writeInt32BE(4 + fields.length, 1);
        fields.copy(error, 5);
        client.write(Buffer.concat([error, Buffer.from([0x5a, 0, 0, 0, 5, 0x49])]));
        return;
      }
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (relay.silent) return;
      // ReadyForQuery ('Z', length 5, status) ends the login.
      if (o.terminateAtLogin && d.length >= 6 && d[d.length - 6] === 0x5a) {
        const fields = Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0');
        const error = Buffer.alloc(5 + fields.length);
        error[0] = 0x45;
        error.writeInt32BE(4 + fields.length, 1);
        fields.copy(error, 5);
        client.end(Buffer.concat([d, error]));
        upstream.destroy();
        return;
      }
      client.write(d);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = new URL(databaseUrl);
  url.port = String((server.address() as net.AddressInfo).port);
  relay.url = url.toString();
  relay.close = () => {
    for (const s of sockets) s.destroy();
    server.close();
  };
  return relay;
}
