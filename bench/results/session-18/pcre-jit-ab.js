// Ad hoc: nginx's own CPU per request with pcre_jit off (as deployed) and on, the rendered
// config as deployed, one worker, in front of a stub upstream answering a constant (so only
// nginx's work differs); wrk with a Lua script sending storefront-like reads (distinct
// product/page keys, a cookie) through the maps. Alternating rounds.
const http = require('node:http');
const fs = require('node:fs');
const { spawn, execFile } = require('node:child_process');
const run = require('node:util').promisify(execFile);
const { writeNginxConfig } = require('/work/main/dist/src/cluster/nginx-config.js');
const cpuOf = (pid) => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
(async () => {
  const body = JSON.stringify({ product: '1', page: 0, count: 5, results: [] });
  const up = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }); res.end(body); });
  up.keepAliveTimeout = 65000;
  await new Promise((r) => up.listen(18821, '127.0.0.1', r));
  const sides = {};
  for (const [name, port, jit] of [['off', 18822, false], ['on', 18823, true]]) {
    const prefix = `/tmp/s18/jit-${name}`; fs.rmSync(prefix, { recursive: true, force: true });
    const conf = writeNginxConfig({ prefix, listen: `127.0.0.1:${port}`, upstreams: ['127.0.0.1:18821'], workerProcesses: '1', readRate: '1000000r/s', writeRate: '1000000r/s', user: 'root', foreground: true, cacheDir: '/dev/shm/s18-' + name });
    if (jit) fs.writeFileSync(conf, 'pcre_jit on;\n' + fs.readFileSync(conf, 'utf8'));
    const ng = spawn('nginx', ['-p', prefix, '-c', conf], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 500));
    const worker = fs.readFileSync(`/proc/${ng.pid}/task/${ng.pid}/children`, 'utf8').trim().split(/\s+/).map(Number).find((c) => fs.readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('worker'));
    sides[name] = { ng, worker, port, us: [] };
  }
  fs.writeFileSync('/tmp/s18/jit.lua', `
local n = 0
request = function()
  n = n + 1
  local p = (n * 7919) % 1000000 + 1
  return wrk.format("GET", "/reviews?product_id=" .. p .. "&page=" .. (n % 3 + 1) .. "&count=5&sort=relevant", { ["Cookie"] = "atelier_wrote=12.345.6789; session=abc" })
end`);
  for (let round = 0; round < 6; round++) {
    for (const name of round % 2 ? ['on', 'off'] : ['off', 'on']) {
      const s = sides[name];
      const before = cpuOf(s.worker);
      const { stdout: out } = await run('wrk', ['-t1', '-c16', '-d8s', '-s', '/tmp/s18/jit.lua', `http://127.0.0.1:${s.port}/`], { encoding: 'utf8' });
      const reqs = Number(/(\d+) requests in/.exec(out)[1]);
      s.us.push((cpuOf(s.worker) - before) * 1000 / reqs);
      console.log(`round ${round + 1} ${name}: ${reqs} requests, nginx worker ${s.us.at(-1).toFixed(1)} µs/request`);
    }
  }
  const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  console.log(`median nginx µs/request: off ${med(sides.off.us).toFixed(1)}, on ${med(sides.on.us).toFixed(1)}`);
  for (const s of Object.values(sides)) s.ng.kill('SIGQUIT');
  up.close();
  setTimeout(() => process.exit(0), 500);
})();
