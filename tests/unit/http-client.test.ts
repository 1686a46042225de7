// The load generator's HTTP/1.1 client against real servers: node:http for the usual
// framings, and raw sockets for what node:http would not send (a body framed by close, an
// interim answer, a head split byte by byte, garbage).
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { HttpClient, type ClientResponse } from '../../loadtest/node/http-client';
import { serve } from '../helpers/serve';

/** The message a request failed with, or 'answered'. */
const failure = (p: Promise<unknown>) => p.then(() => 'answered', (e: Error) => e.message);

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

test('at most `connections` sockets, and the rest wait their turn, first in first out', async () => {
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
    const two = client(s.origin, 2);
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => two.fetch({ method: 'GET', path: `/${i}` })));
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
    expect(most).toBe(2);
    expect(s.connections()).toBe(2);
    // The order is the server's to see only on one socket.
    order.length = 0;
    const one = client(s.origin, 1);
    await Promise.all(Array.from({ length: 6 }, (_, i) => one.fetch({ method: 'GET', path: `/${i}` })));
    expect(order).toEqual(Array.from({ length: 6 }, (_, i) => `/${i}`));
    expect(() => new HttpClient(s.origin, { connections: 0, timeoutMs: 1000 })).toThrow(/connections/);
  } finally {
    await s.close();
  }
});

test('Connection: close ends that socket from the client\'s side too, and the next request gets a new one', async () => {
  // A server that says close but leaves the socket open: the client must not reuse it.
  let ended = 0;
  const s = await serve('raw', (socket) => {
    socket.on('end', () => ended++);
    socket.on('data', () => socket.write('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye'));
  });
  try {
    const c = client(s.origin, 1);
    for (let i = 0; i < 3; i++) expect((await c.fetch({ method: 'GET', path: '/', keepBody: true })).body!.toString()).toBe('bye');
    expect(s.connections()).toBe(3);
    await new Promise((r) => setTimeout(r, 50));
    expect(ended).toBe(3);
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
    const attempt = (path: string) => failure(c.fetch({ method: 'GET', path }));
    expect(await attempt('/reset')).toMatch(/^connection closed before the answer ended/);
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
  const refused = await failure(client(`http://127.0.0.1:${port}`).fetch({ method: 'GET', path: '/' }));
  expect(refused).toBe('connection closed before the answer ended (ECONNREFUSED)');
});

test('destroy fails what is in flight and what is queued, and later requests', async () => {
  const s = await serve('http', () => undefined); // never answers
  try {
    const c = new HttpClient(s.origin, { connections: 1, timeoutMs: 60_000 });
    const outcomes = Array.from({ length: 3 }, () => c.fetch({ method: 'GET', path: '/' }).then((r: ClientResponse) => r.status, (e: Error) => e.message));
    await new Promise((r) => setTimeout(r, 50));
    c.destroy();
    expect(await Promise.all(outcomes)).toEqual(Array(3).fill('client closed'));
    expect(await failure(c.fetch({ method: 'GET', path: '/' }))).toBe('client closed');
  } finally {
    await s.close();
  }
});

test('a chunked answer split at every byte (extensions, sizes, the CRLF after each chunk), and an interim answer in the same write as the final one', async () => {
  const s = await serve('raw', (socket) => {
    socket.on('data', async (d) => {
      if (d.toString('latin1').startsWith('GET /interim')) {
        socket.write('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        return;
      }
      const answer = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n';
      for (const ch of answer) {
        socket.write(ch);
        await new Promise((r) => setTimeout(r, 1));
      }
    });
  });
  try {
    const c = client(s.origin, 1);
    const r = await c.fetch({ method: 'GET', path: '/', keepBody: true });
    expect(r.body!.toString()).toBe('hello 0123456789');
    expect(r.bodyBytes).toBe(16);
    const interim = await c.fetch({ method: 'GET', path: '/interim', keepBody: true });
    expect([interim.status, interim.body!.toString()]).toEqual([200, 'ok']);
    expect(s.connections()).toBe(1);
  } finally {
    await s.close();
  }
});

test('bytes after an answer\'s end cost that socket, not the next request; an HTTP/1.0 answer closes its socket', async () => {
  const s = await serve('raw', (socket) => {
    socket.on('data', (d) => {
      const path = d.toString('latin1').split(' ')[1];
      if (path === '/extra') socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale');
      else if (path === '/old') socket.write('HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold');
      else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh');
    });
  });
  try {
    const c = client(s.origin, 1);
    expect((await c.fetch({ method: 'GET', path: '/extra', keepBody: true })).body!.toString()).toBe('ok');
    expect((await c.fetch({ method: 'GET', path: '/next', keepBody: true })).body!.toString()).toBe('fresh');
    expect(s.connections()).toBe(2);
    expect((await c.fetch({ method: 'GET', path: '/old', keepBody: true })).body!.toString()).toBe('old');
    expect((await c.fetch({ method: 'GET', path: '/next', keepBody: true })).body!.toString()).toBe('fresh');
    expect(s.connections()).toBe(3);
  } finally {
    await s.close();
  }
});

test('a reset in a body framed by close is an error, not a short answer', async () => {
  const s = await serve('raw', (socket) => {
    socket.once('data', () => socket.write('HTTP/1.1 200 OK\r\n\r\npartial', () => setTimeout(() => socket.resetAndDestroy(), 20)));
  });
  try {
    expect(await failure(client(s.origin).fetch({ method: 'GET', path: '/' }))).toMatch(/^connection closed before the answer ended/);
  } finally {
    await s.close();
  }
});

test('a kept-alive socket closed by the server as a request goes out: an error, never hidden by a resend', async () => {
  // The server answers the first request on each connection and closes it at the second,
  // without a byte: what a client sees when an idle timeout and its send cross.
  let seen = 0;
  const s = await serve('raw', (socket) => {
    let n = 0;
    socket.on('data', () => {
      seen++;
      if (n++ === 0) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      else socket.destroy();
    });
  });
  try {
    const c = client(s.origin, 1);
    for (const method of ['GET', 'POST']) {
      await c.fetch({ method: 'GET', path: '/' });
      const second = await failure(c.fetch({ method, path: '/again', body: method === 'POST' ? '{}' : undefined }));
      expect(second).toMatch(/^connection closed before the answer ended/);
    }
    // Each request reached the server once.
    expect(seen).toBe(4);
  } finally {
    await s.close();
  }
});

test('an idle socket whose server has ended its side is not used, even before its close is handled', async () => {
  const s = await serve('raw', (socket) => {
    socket.once('data', () => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', () => setTimeout(() => socket.end(), 20)));
  });
  try {
    const c = client(s.origin, 1);
    await c.fetch({ method: 'GET', path: '/' });
    // Send from the socket's own 'end' (the server's FIN), before its 'close' reaches the pool.
    const idle = (c as unknown as { idle: { socket: net.Socket }[] }).idle[0];
    const second = await new Promise<string>((resolve) => idle.socket.once('end', () => {
      c.fetch({ method: 'GET', path: '/', keepBody: true }).then((r) => resolve(r.body!.toString()), (e: Error) => resolve(e.message));
    }));
    expect(second).toBe('ok');
    expect(s.connections()).toBe(2);
  } finally {
    await s.close();
  }
});

test('an idle socket the client has just given up on is not used for the next request', async () => {
  const s = await serve('http', (req, res) => res.end('ok'));
  try {
    const c = client(s.origin, 1);
    await c.fetch({ method: 'GET', path: '/' });
    // The sweep closes a socket idle past its limit; a send in the same turn of the event
    // loop, before the socket's 'close', must not take it.
    (c as unknown as { idle: { idleLimitMs: number }[] }).idle[0].idleLimitMs = 0;
    await new Promise((r) => setTimeout(r, 5));
    (c as unknown as { sweep(): void }).sweep();
    expect((await c.fetch({ method: 'POST', path: '/', body: '{}' })).status).toBe(200);
    expect(s.connections()).toBe(2);
  } finally {
    await s.close();
  }
});

test('an idle socket is closed before the server\'s announced keep-alive timeout, so no request meets its close', async () => {
  const server = http.createServer((req, res) => res.end('ok'));
  server.keepAliveTimeout = 3_000; // announced as Keep-Alive: timeout=3
  let closedByClient = 0;
  server.on('connection', (socket) => socket.on('end', () => closedByClient++));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const c = client(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, 1, 500);
    await c.fetch({ method: 'GET', path: '/' });
    // Idle past 3 s − 2 s: the client's sweep (every 500 ms here) has closed it.
    await new Promise((r) => setTimeout(r, 1_800));
    expect(closedByClient).toBe(1);
    expect((await c.fetch({ method: 'GET', path: '/' })).status).toBe(200);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('requests queued behind a silent server time out with it, not one timeout after another', async () => {
  const s = await serve('raw', (socket) => void socket.resume()); // reads, never answers
  try {
    const c = client(s.origin, 1, 300);
    const started = performance.now();
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => failure(c.fetch({ method: 'GET', path: '/' }))));
    // One after another, five requests would take five timeouts (at least 1.5 s). The sweep
    // that fails the silent connection fails the requests queued longer than the timeout with
    // it. One queued a few ms after the first was sent (more when this process is preempted
    // between the two) may be just inside its timeout at that sweep: it then gets the next
    // connection and times out once more, at the next sweep or the one after (~900 ms in all);
    // the others, older than the timeout by then, fail at the next sweep. So: at most two
    // "timed out", two connections, and well under five timeouts' time.
    expect(outcomes[0]).toBe('timed out');
    for (const o of outcomes.slice(1)) expect(['timed out waiting for a socket', 'timed out']).toContain(o);
    expect(outcomes.filter((o) => o === 'timed out').length).toBeLessThanOrEqual(2);
    expect(performance.now() - started).toBeLessThan(1_400);
    expect(s.connections()).toBeLessThanOrEqual(2);
  } finally {
    await s.close();
  }
});
