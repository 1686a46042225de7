// The load generator's HTTP/1.1 client against real servers: node:http for the usual
// framings, and raw sockets for what node:http would not send (a body framed by close, an
// interim answer, a head split byte by byte, garbage).
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { HttpClient, type ClientResponse } from '../../loadtest/node/http-client';

type Listener = http.RequestListener | ((socket: net.Socket) => void);

async function serve(kind: 'http' | 'raw', handler: Listener): Promise<{ origin: string; connections: () => number; close: () => Promise<void> }> {
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

const clients: HttpClient[] = [];
function client(origin: string, connections = 4, timeoutMs = 5_000): HttpClient {
  const c = new HttpClient(origin, { connections, timeoutMs });
  clients.push(c);
  return c;
}
afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
});

test('a Content-Length answer: status, lower-case headers (repeats joined), the body when asked and its size always', async () => {
  const s = await serve('http', (req, res) => {
    res.setHeader('X-Cache-Status', 'HIT');
    res.setHeader('Set-Cookie', ['a=1', 'b=2']);
    res.writeHead(req.url === '/missing' ? 404 : 200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ url: req.url, accept: req.headers['accept-encoding'] }));
  });
  try {
    const c = client(s.origin);
    const kept = await c.fetch({ method: 'GET', path: '/reviews?product_id=1', headers: { 'accept-encoding': 'gzip' }, keepBody: true });
    expect(kept.status).toBe(200);
    expect(kept.headers['x-cache-status']).toBe('HIT');
    expect(kept.headers['set-cookie']).toBe('a=1, b=2');
    expect(JSON.parse(kept.body!.toString())).toEqual({ url: '/reviews?product_id=1', accept: 'gzip' });
    const counted = await c.fetch({ method: 'GET', path: '/missing' });
    expect(counted.status).toBe(404);
    expect(counted.body).toBeUndefined();
    expect(counted.bodyBytes).toBe(Buffer.byteLength(JSON.stringify({ url: '/missing' })));
    // Both on one keep-alive socket.
    expect(s.connections()).toBe(1);
  } finally {
    await s.close();
  }
});

test('a chunked answer written in parts over time is read whole, trailers and all, and the socket is reused', async () => {
  const text = JSON.stringify({ results: Array.from({ length: 500 }, (_, i) => ({ review_id: i, body: 'é'.repeat(i % 7) })) });
  const gz = zlib.gzipSync(text);
  const s = await serve('http', (req, res) => {
    res.writeHead(200, { 'Content-Encoding': 'gzip', 'Transfer-Encoding': 'chunked', Trailer: 'X-Done' });
    const parts = [gz.subarray(0, 10), gz.subarray(10, 700), gz.subarray(700)];
    const next = () => {
      const p = parts.shift();
      if (!p) { res.addTrailers({ 'X-Done': '1' }); res.end(); return; }
      res.write(p);
      setTimeout(next, 5);
    };
    next();
  });
  try {
    const c = client(s.origin);
    for (let i = 0; i < 3; i++) {
      const r = await c.fetch({ method: 'GET', path: '/', keepBody: true });
      expect(r.headers['transfer-encoding']).toBe('chunked');
      expect(r.bodyBytes).toBe(gz.length);
      expect(zlib.gunzipSync(r.body!).toString()).toBe(text);
    }
    expect(s.connections()).toBe(1);
  } finally {
    await s.close();
  }
});

test('a POST carries its body with its length, in UTF-8', async () => {
  const got: { length?: string; body: string }[] = [];
  const s = await serve('http', (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      got.push({ length: req.headers['content-length'], body });
      res.writeHead(201).end();
    });
  });
  try {
    const c = client(s.origin);
    const body = JSON.stringify({ summary: 'Très bien — 👍' });
    expect((await c.fetch({ method: 'POST', path: '/reviews', headers: { 'content-type': 'application/json' }, body })).status).toBe(201);
    expect(got).toEqual([{ length: String(Buffer.byteLength(body)), body }]);
  } finally {
    await s.close();
  }
});

test('at most `connections` sockets: the rest wait their turn, first in first out', async () => {
  let open = 0;
  let most = 0;
  const order: string[] = [];
  const s = await serve('http', (req, res) => {
    open++;
    most = Math.max(most, open);
    order.push(req.url!);
    setTimeout(() => { open--; res.end('ok'); }, 20);
  });
  try {
    const c = client(s.origin, 2);
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => c.fetch({ method: 'GET', path: `/${i}` })));
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
    expect(most).toBe(2);
    expect(s.connections()).toBe(2);
    expect(order).toEqual(Array.from({ length: 10 }, (_, i) => `/${i}`));
  } finally {
    await s.close();
  }
});

test('Connection: close ends that socket, and the next request gets a new one', async () => {
  const s = await serve('http', (req, res) => {
    res.setHeader('Connection', 'close');
    res.end('bye');
  });
  try {
    const c = client(s.origin, 1);
    for (let i = 0; i < 3; i++) expect((await c.fetch({ method: 'GET', path: '/', keepBody: true })).body!.toString()).toBe('bye');
    expect(s.connections()).toBe(3);
  } finally {
    await s.close();
  }
});

test('a body framed by the connection closing, after an interim answer and a head sent byte by byte', async () => {
  const s = await serve('raw', (socket) => {
    socket.once('data', async () => {
      const answer = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n';
      for (const ch of answer) {
        socket.write(ch);
        await new Promise((r) => setTimeout(r, 1));
      }
      socket.end('until the end');
    });
  });
  try {
    const r = await client(s.origin).fetch({ method: 'GET', path: '/', keepBody: true });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/plain');
    expect(r.body!.toString()).toBe('until the end');
  } finally {
    await s.close();
  }
});

test('failures are errors, never answers: a reset mid-body, a garbled head, a bad chunk, a refused connection, no answer in time', async () => {
  const s = await serve('raw', (socket) => {
    socket.once('data', (d) => {
      const path = d.toString('latin1').split(' ')[1];
      if (path === '/reset') socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf', () => socket.resetAndDestroy());
      else if (path === '/garbled') socket.write('SMTP ready\r\n\r\n');
      else if (path === '/bad-chunk') socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n');
      else if (path === '/bad-length') socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n');
      // '/silent': nothing
    });
  });
  try {
    const c = client(s.origin, 8, 300);
    const attempt = (path: string) => c.fetch({ method: 'GET', path }).then(() => 'answered', (e: Error) => e.message);
    expect(await attempt('/reset')).toBe('connection closed before the answer ended');
    expect(await attempt('/garbled')).toBe('malformed answer head');
    expect(await attempt('/bad-chunk')).toBe('malformed chunk size');
    expect(await attempt('/bad-length')).toBe('malformed answer head');
    const started = performance.now();
    expect(await attempt('/silent')).toBe('timed out');
    // The sweep runs every timeoutMs (300 ms here): bounded, not a hang.
    expect(performance.now() - started).toBeLessThan(2_000);
  } finally {
    await s.close();
  }
  const port = Number(new URL(s.origin).port);
  const refused = await client(`http://127.0.0.1:${port}`).fetch({ method: 'GET', path: '/' }).then(() => 'answered', (e: Error) => e.message);
  expect(refused).toBe('connection closed before the answer ended');
});

test('destroy fails what is in flight and what is queued, and later requests', async () => {
  const s = await serve('http', () => undefined); // never answers
  try {
    const c = new HttpClient(s.origin, { connections: 1, timeoutMs: 60_000 });
    const outcomes = Array.from({ length: 3 }, () => c.fetch({ method: 'GET', path: '/' }).then((r: ClientResponse) => r.status, (e: Error) => e.message));
    await new Promise((r) => setTimeout(r, 50));
    c.destroy();
    expect(await Promise.all(outcomes)).toEqual(Array(3).fill('client closed'));
    expect(await c.fetch({ method: 'GET', path: '/' }).then(() => 'answered', (e: Error) => e.message)).toBe('client closed');
  } finally {
    await s.close();
  }
});
