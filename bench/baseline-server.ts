// The benchmark's HTTP ceiling: a bare node:http server answering every request with
// the same 1 KB JSON, nothing else. Run as its own process: node baseline-server.js PORT
import http from 'node:http';

const body = JSON.stringify({ product: '1', page: 0, count: 5, results: [{ text: 'x'.repeat(960) }] });

http
  .createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  })
  .listen(Number(process.argv[2] ?? 3999), '127.0.0.1', () => console.log('baseline ready'));
