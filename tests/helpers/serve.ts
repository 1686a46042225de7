// A throwaway server on loopback for tests of clients: node:http, or raw sockets for what
// node:http would not send. Counts the connections it accepted.
import http from 'node:http';
import net from 'node:net';

export interface Served {
  /** http://127.0.0.1:PORT */
  origin: string;
  /** Connections accepted so far. */
  connections: () => number;
  close: () => Promise<void>;
}

type Listener = http.RequestListener | ((socket: net.Socket) => void);

export async function serve(kind: 'http', handler: http.RequestListener): Promise<Served>;
export async function serve(kind: 'raw', handler: (socket: net.Socket) => void): Promise<Served>;
export async function serve(kind: 'http' | 'raw', handler: Listener): Promise<Served> {
  let connections = 0;
  const server = kind === 'http' ? http.createServer(handler as http.RequestListener) : net.createServer(handler as (s: net.Socket) => void);
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    origin: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    connections: () => connections,
    close: async () => {
      if (server instanceof http.Server) server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
