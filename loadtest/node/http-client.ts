// The generator's HTTP/1.1 client: keep-alive sockets to one origin, one request at a time
// on each, requests beyond the socket limit queued first in first out. It does only what a
// load generator needs (send a request, frame the answer by Content-Length, chunks or close,
// keep its headers and, when asked, its body) so that it costs the box it measures as
// little as it can: the generator on it spent 30 µs per request at 4,000 req/s against a
// bare server, where the same generator on undici's `Pool.request` spent 50–54
// (docs/benchmarks.md, eleventh session). No pipelining, no retries, no redirects: a
// request either gets its answer or an error (the connection refused, reset or closed before
// the answer ended, a malformed answer, no answer within the timeout). A kept-alive socket is
// not reused once the server has closed its side, and the client closes an idle one before
// the server's announced keep-alive timeout, so a request does not go out on a connection the
// server is closing.
import net from 'node:net';

export interface ClientRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** Keep the answer's body (decoded from chunks, still in its Content-Encoding); otherwise it is only counted. */
  keepBody?: boolean;
}

export interface ClientResponse {
  status: number;
  /** Lower-case names; a repeated header's values joined with ", ". */
  headers: Record<string, string>;
  /** The body when `keepBody` was asked, else undefined. */
  body?: Buffer;
  /** Bytes of body received (after chunk framing). */
  bodyBytes: number;
}

export type Callback = (err: Error | null, res?: ClientResponse) => void;

export interface ClientOptions {
  /** Most sockets open at once. */
  connections: number;
  /**
   * An answer not complete this long after its request was written fails, and so does a
   * request that waited this long for a socket (ms; checked once a second at most, so a
   * request fails after at most twice this and two seconds).
   */
  timeoutMs: number;
  localAddress?: string;
  /** Close a socket idle this long (ms; 4,000 by default), or sooner when the server announces `Keep-Alive: timeout=N`. */
  idleTimeoutMs?: number;
}

/** Longest status line plus headers, or chunk-size line, accepted (bytes). */
const MAX_HEAD = 64 * 1024;
/** A socket idle this much less than the server's `Keep-Alive: timeout=N` is closed by us first. */
const IDLE_MARGIN_MS = 2_000;

interface Pending { req: ClientRequest; cb: Callback; queuedAt: number }

type Phase = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailer' | 'close';

class Connection {
  readonly socket: net.Socket;
  current: Pending | null = null;
  sentAt = 0;
  /** When it last became idle, and how long it may stay so (the server's hint, or the client's default). */
  idleSince = 0;
  idleLimitMs: number;
  /** In the pool's idle list (kept by the pool). */
  idle = false;
  /** The socket's last error (its code names a reset or a refusal). */
  private lastError: NodeJS.ErrnoException | undefined;
  private buf: Buffer | null = null;
  private phase: Phase = 'head';
  private remaining = 0;
  private res: ClientResponse | null = null;
  private chunks: Buffer[] = [];
  private closeAfter = false;

  constructor(private readonly pool: HttpClient, port: number, host: string, idleLimitMs: number, localAddress?: string) {
    this.idleLimitMs = idleLimitMs;
    this.socket = net.connect({ port, host, localAddress, noDelay: true });
    this.socket.on('data', (d: Buffer) => this.onData(d));
    this.socket.on('error', (e) => (this.lastError = e)); // the 'close' that follows ends the request
    this.socket.on('close', (hadError) => this.onClose(hadError));
  }

  send(p: Pending, host: string): void {
    this.current = p;
    this.buf = null;
    this.phase = 'head';
    this.res = null;
    this.chunks = [];
    this.closeAfter = false;
    const { req } = p;
    let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${host}\r\n`;
    let lengthGiven = false;
    const headers = req.headers ?? {};
    for (const name in headers) {
      head += `${name}: ${headers[name]}\r\n`;
      if (name.toLowerCase() === 'content-length') lengthGiven = true;
    }
    const body = req.body === undefined ? undefined : Buffer.from(req.body);
    if (body && !lengthGiven) head += `content-length: ${body.length}\r\n`;
    head += '\r\n';
    this.sentAt = performance.now();
    this.socket.write(body ? Buffer.concat([Buffer.from(head, 'latin1'), body]) : head, 'latin1');
  }

  /** Ends the request in flight with `err` and closes the socket. */
  fail(err: Error): void {
    const p = this.current;
    this.current = null;
    this.socket.destroy();
    p?.cb(err);
  }

  private onData(d: Buffer): void {
    if (!this.current) {
      // An answer nobody asked for: the connection's framing is lost.
      this.socket.destroy();
      return;
    }
    const buf = this.buf ? Buffer.concat([this.buf, d]) : d;
    let pos = 0;
    this.buf = null;
    while (this.current && pos < buf.length) {
      if (this.phase === 'head') {
        const end = buf.indexOf('\r\n\r\n', pos, 'latin1');
        if (end < 0) {
          if (buf.length - pos > MAX_HEAD) return this.fail(new Error('answer head too long'));
          break;
        }
        if (!this.parseHead(buf.toString('latin1', pos, end))) return this.fail(new Error('malformed answer head'));
        pos = end + 4;
      } else if (this.phase === 'length' || this.phase === 'chunk-data' || this.phase === 'close') {
        const n = Math.min(this.remaining, buf.length - pos);
        this.body(buf.subarray(pos, pos + n));
        pos += n;
        if (this.phase !== 'close') this.remaining -= n;
        if (this.remaining === 0) {
          if (this.phase === 'length') this.finish();
          else { this.phase = 'chunk-end'; this.remaining = 2; }
        }
      } else if (this.phase === 'chunk-end') {
        // The CRLF that ends a chunk's data, possibly split across reads.
        if (buf[pos] !== (this.remaining === 2 ? 0x0d : 0x0a)) return this.fail(new Error('malformed chunk end'));
        pos++;
        if (--this.remaining === 0) this.phase = 'chunk-size';
      } else {
        // chunk-size or trailer: one line at a time
        const eol = buf.indexOf('\r\n', pos, 'latin1');
        if (eol < 0) {
          if (buf.length - pos > MAX_HEAD) return this.fail(new Error('chunk line too long'));
          break;
        }
        const line = buf.toString('latin1', pos, eol);
        pos = eol + 2;
        if (this.phase === 'trailer') {
          if (line === '') this.finish();
        } else {
          // Hex digits, then perhaps extensions (";name=value") that mean nothing here.
          const m = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
          if (!m) return this.fail(new Error('malformed chunk size'));
          const size = parseInt(m[1], 16);
          if (size === 0) this.phase = 'trailer';
          else { this.phase = 'chunk-data'; this.remaining = size; }
        }
      }
    }
    if (this.current) {
      if (pos < buf.length) this.buf = buf.subarray(pos);
    } else if (pos < buf.length || this.closeAfter) {
      // Bytes after the answer's end belong to no request: framing is lost, so is the socket.
      this.socket.destroy();
    } else {
      this.pool.release(this);
    }
  }

  /** Reads the status line and headers and chooses how the body is framed; false when malformed. */
  private parseHead(head: string): boolean {
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0]);
    if (!m) return false;
    const status = Number(m[2]);
    const headers: Record<string, string> = {};
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(':');
      if (colon <= 0 || /^[ \t]/.test(lines[i])) return false; // obs-fold is not accepted either
      const name = lines[i].slice(0, colon).trim().toLowerCase();
      const value = lines[i].slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    // 1xx: an interim answer; the real one follows.
    if (status < 200) return true;
    this.res = { status, headers, bodyBytes: 0 };
    const connection = (headers.connection ?? '').toLowerCase();
    // HTTP/1.0 closes unless it says keep-alive; 1.1 keeps unless it says close.
    this.closeAfter = m[1] === '0' ? !/(^|,)\s*keep-alive\s*(,|$)/.test(connection) : /(^|,)\s*close\s*(,|$)/.test(connection);
    const hint = /(?:^|,)\s*timeout=(\d+)/i.exec(headers['keep-alive'] ?? '');
    if (hint) this.idleLimitMs = Math.min(this.idleLimitMs, Math.max(0, Number(hint[1]) * 1000 - IDLE_MARGIN_MS));
    const te = headers['transfer-encoding'];
    if (this.current!.req.method.toUpperCase() === 'HEAD' || status === 204 || status === 304) {
      this.finish();
    } else if (te !== undefined) {
      // Chunked when it is the last coding; any other framing runs to the close.
      if (/(^|,)\s*chunked\s*$/i.test(te)) this.phase = 'chunk-size';
      else this.closeBody();
    } else if (headers['content-length'] !== undefined) {
      if (!/^\d{1,15}$/.test(headers['content-length'])) return false;
      this.remaining = Number(headers['content-length']);
      this.phase = 'length';
      if (this.remaining === 0) this.finish();
    } else {
      this.closeBody();
    }
    return true;
  }

  /** The body is framed by the connection's close. */
  private closeBody(): void {
    this.phase = 'close';
    this.remaining = Infinity;
    this.closeAfter = true;
  }

  private body(part: Buffer): void {
    this.res!.bodyBytes += part.length;
    if (this.current!.req.keepBody) this.chunks.push(Buffer.from(part));
  }

  /** The answer is complete: its callback runs; the caller then releases or closes the socket. */
  private finish(): void {
    const p = this.current!;
    const res = this.res!;
    if (p.req.keepBody) res.body = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    this.current = null;
    this.chunks = [];
    this.phase = 'head';
    this.idleSince = performance.now();
    p.cb(null, res);
  }

  private onClose(hadError: boolean): void {
    this.pool.forget(this);
    const p = this.current;
    if (!p) return;
    if (this.phase === 'close' && this.res && !hadError) this.finish();
    else this.fail(new Error(`connection closed before the answer ended${this.lastError?.code ? ` (${this.lastError.code})` : ''}`));
  }

  /** Still usable for a request: not destroyed, and the server has not closed its side. */
  get usable(): boolean {
    return !this.socket.destroyed && !this.socket.readableEnded;
  }
}

/** Keep-alive HTTP/1.1 to one origin (`http://host:port`). */
export class HttpClient {
  private readonly host: string;
  private readonly port: number;
  private readonly hostname: string;
  private readonly open = new Set<Connection>();
  private idle: Connection[] = [];
  private queue: Pending[] = [];
  private queueHead = 0;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(origin: string, private readonly o: ClientOptions) {
    const url = new URL(origin);
    if (url.protocol !== 'http:') throw new Error(`the generator speaks plain HTTP only: ${origin}`);
    if (!Number.isInteger(o.connections) || o.connections < 1) throw new Error(`connections must be a whole number of at least 1, not ${o.connections}`);
    this.host = url.host;
    this.hostname = url.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(url.port || 80);
    // One sweep a second, rather than a timer per request: answers overdue, requests that
    // waited too long for a socket, sockets idle for as long as the server keeps them.
    this.timer = setInterval(() => this.sweep(), Math.min(1000, this.o.timeoutMs)).unref();
  }

  request(req: ClientRequest, cb: Callback): void {
    const p: Pending = { req, cb, queuedAt: performance.now() };
    if (this.closed) return void queueMicrotask(() => cb(new Error('client closed')));
    const c = this.takeIdle();
    if (c) c.send(p, this.host);
    else if (this.open.size < this.o.connections) this.connect().send(p, this.host);
    else this.queue.push(p);
  }

  /** Resolves with the answer, or rejects with the error. */
  fetch(req: ClientRequest): Promise<ClientResponse> {
    return new Promise((resolve, reject) => this.request(req, (err, res) => (err ? reject(err) : resolve(res!))));
  }

  /** Closes every socket; requests in flight or queued fail, and so do later ones. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    const queued = this.queue.slice(this.queueHead);
    this.queue = [];
    this.queueHead = 0;
    for (const c of this.idle) c.idle = false;
    this.idle = [];
    for (const c of [...this.open]) c.fail(new Error('client closed'));
    for (const p of queued) p.cb(new Error('client closed'));
  }

  /** @internal A connection's answer ended and it stays open: the next queued request, or idle. */
  release(c: Connection): void {
    if (this.closed || !c.usable) return; // its 'close' hands the next queued request a new socket
    const next = this.dequeue();
    if (next) c.send(next, this.host);
    else {
      c.idle = true;
      this.idle.push(c);
    }
  }

  /** @internal A connection closed: a queued request gets a new one. */
  forget(c: Connection): void {
    this.open.delete(c);
    this.unidle(c);
    if (this.closed) return;
    const next = this.dequeue();
    if (next) this.connect().send(next, this.host);
  }

  /** The most recently used idle socket still usable (LIFO keeps few sockets busy). */
  private takeIdle(): Connection | undefined {
    for (let c = this.idle.pop(); c; c = this.idle.pop()) {
      c.idle = false;
      if (c.usable) return c;
    }
    return undefined;
  }

  private unidle(c: Connection): void {
    if (c.idle) {
      const i = this.idle.indexOf(c);
      if (i >= 0) this.idle.splice(i, 1);
    }
    c.idle = false;
  }

  private sweep(): void {
    const now = performance.now();
    for (const c of this.open) {
      if (c.current) {
        if (now - c.sentAt > this.o.timeoutMs) c.fail(new Error('timed out'));
      } else if (c.idle && now - c.idleSince > c.idleLimitMs) {
        // Out of the idle list now: its 'close' comes later, and a send may come before it.
        this.unidle(c);
        c.socket.destroy();
      }
    }
    // Queued requests are oldest first: fail those that never got a socket in time.
    while (this.queueHead < this.queue.length && now - this.queue[this.queueHead].queuedAt > this.o.timeoutMs) {
      this.dequeue()!.cb(new Error('timed out waiting for a socket'));
    }
  }

  private dequeue(): Pending | undefined {
    if (this.queueHead >= this.queue.length) return undefined;
    const p = this.queue[this.queueHead++];
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    return p;
  }

  private connect(): Connection {
    const c = new Connection(this, this.port, this.hostname, this.o.idleTimeoutMs ?? 4_000, this.o.localAddress);
    this.open.add(c);
    return c;
  }
}
