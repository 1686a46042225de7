// One raw HTTP/1.1 exchange over a socket: what curl or a fuzzer can send and fetch cannot
// (a NUL in the path, an unknown method, a hostile header). Bounded: 10 s at most.
// The request is sent with a half-close (FIN) unless `halfClose` is false: nginx takes a
// client's FIN while it waits for a host as the client gone (499, nothing sent back), so a
// request nginx proxies needs the socket left open (send it with Connection: close).
import net from 'node:net';

export function rawHttp(port: number, request: string | Buffer, o: { halfClose?: boolean } = {}): Promise<{ status: number; headers: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => (o.halfClose === false ? socket.write(request) : socket.end(request)));
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => (data += d));
    socket.on('error', reject);
    socket.on('close', () => {
      const [head, ...rest] = data.split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), headers: head, body: rest.join('\r\n\r\n') });
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer in 10 s')));
  });
}
