// What ops install: the systemd units (checked offline by systemd-analyze, for which any
// output is a problem: it exits 0 on many mistakes) and the database roles of
// deploy/roles.sql (the hosts' role reads and writes rows but cannot change the schema).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import { createApp } from '../../src/app';
import { Db, ident, withClient } from '../../src/db';
import { load } from '../../src/etl/load';
import { migrate } from '../../src/db/migrate';
import { fromRoot } from '../../src/lib/paths';
import { available } from '../helpers/requirements';
import { LONG_BODY } from '../helpers/fixtures';

(available(__filename, 'the systemd unit checks', 'systemd-analyze') ? describe : describe.skip)('systemd units', () => {
  const units = fs.readdirSync(fromRoot('deploy', 'systemd')).filter((f) => f.endsWith('.service'));

  // The programs the units run on a production machine. systemd-analyze checks that each is
  // executable here; on a machine without one (nginx is not needed to check a unit file) that
  // one complaint is expected and is the only one let through.
  const INSTALLED_BY_DEPLOYMENT = ['/usr/sbin/nginx', '/usr/bin/node'];
  const absentProgram = (line: string) => {
    const m = /^\S+: Command (\S+) is not executable: No such file or directory$/.exec(line);
    return !!m && INSTALLED_BY_DEPLOYMENT.includes(m[1]) && !fs.existsSync(m[1]);
  };

  test.each(units)('%s passes systemd-analyze verify without a word', (unit) => {
    const r = spawnSync('systemd-analyze', ['verify', fromRoot('deploy', 'systemd', unit)], { encoding: 'utf8' });
    const words = `${r.stdout}${r.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l && !absentProgram(l));
    expect(words).toEqual([]);
    if (!words.length && r.status !== 0) expect(`${r.stdout}${r.stderr}`).toMatch(/is not executable/);
    else expect(r.status).toBe(0);
  });

  test('the checker does complain about a broken unit (so silence above means something)', () => {
    const bad = path.join(fs.mkdtempSync('/tmp/atelier-unit-'), 'bad.service');
    fs.writeFileSync(bad, '[Service]\nRestart=sometimes\nExecStart=/bin/true\n');
    const r = spawnSync('systemd-analyze', ['verify', bad], { encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toMatch(/Restart|sometimes/);
  });

  test("the host unit's stop timeout outlasts the service's drain", () => {
    const unit = fs.readFileSync(fromRoot('deploy', 'systemd', 'atelier-reviews.service'), 'utf8');
    const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1]);
    const env = fs.readFileSync(fromRoot('deploy', 'atelier-reviews.env.example'), 'utf8');
    const drainMs = Number(/^SHUTDOWN_TIMEOUT_MS=(\d+)$/m.exec(env)?.[1]) + Number(/^DRAIN_GRACE_MS=(\d+)$/m.exec(env)?.[1]);
    expect(stop * 1000).toBeGreaterThan(drainMs);
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
  });
});

describe('database roles (deploy/roles.sql)', () => {
  const server = () => process.env.ATELIER_TEST_SERVER!;
  const tag = `${process.pid}_${Date.now().toString(36)}`;
  const owner = `atelier_owner_${tag}`;
  const app = `atelier_app_${tag}`;
  const dbName = `roles_${tag}`;
  const asRole = (role: string) => {
    const u = new URL(`${server()}/${dbName}`);
    u.username = role;
    u.password = 'pw';
    return u.toString();
  };

  beforeAll(async () => {
    // deploy/roles.sql with this test's names (psql variables are not available here).
    const sql = fs.readFileSync(fromRoot('deploy', 'roles.sql'), 'utf8')
      .replaceAll('atelier_owner', owner).replaceAll('atelier_app', app)
      .replace(/:'\w+_password'/g, "'pw'")
      .replace('CREATE DATABASE atelier OWNER', `CREATE DATABASE ${dbName} OWNER`);
    const [beforeConnect, afterConnect] = sql.split(/^\\connect atelier$/m);
    await withClient(`${server()}/postgres`, async (c) => {
      for (const s of beforeConnect.split(';').map((x) => x.replace(/^\s*--.*$/gm, '').trim()).filter(Boolean)) await c.query(s);
    });
    await withClient(`${server()}/${dbName}`, (c) => c.query(afterConnect));
    await migrate(asRole(owner));
  });

  afterAll(async () => {
    await withClient(`${server()}/postgres`, async (c) => {
      await c.query(`DROP DATABASE IF EXISTS ${ident(dbName)} WITH (FORCE)`);
      await c.query(`DROP ROLE IF EXISTS ${ident(app)}`);
      await c.query(`DROP ROLE IF EXISTS ${ident(owner)}`);
    });
  });

  test("the hosts' role serves reads and writes, but cannot DROP, ALTER or CREATE", async () => {
    const db = new Db({ connectionString: asRole(app), poolSize: 2 });
    try {
      const api = createApp(db, { log: () => undefined });
      expect((await request(api).get('/reviews?product_id=1')).status).toBe(200);
      const posted = await request(api).post('/reviews').send({ product_id: 1, rating: 5, body: LONG_BODY, recommend: true, name: 'role', email: 'r@example.com' });
      expect(posted.status).toBe(201);
      expect((await request(api).put(`/reviews/${posted.body.review_id}/report`)).status).toBe(204);
      // It may read a standby's streamed timeline (src/db/replicas.ts), nothing more.
      expect((await db.query("SELECT pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS ok")).rows[0].ok).toBe(true);
      for (const ddl of ['DROP TABLE atelier.reviews', 'ALTER TABLE atelier.reviews ADD COLUMN x int', 'CREATE TABLE atelier.x (a int)', 'CREATE TABLE public.x (a int)', 'TRUNCATE atelier.reviews']) {
        await expect(db.query(ddl)).rejects.toMatchObject({ code: '42501' });
      }
    } finally {
      await db.close();
    }
  });

  test("after an import (run as the owner) replaces every table, the hosts' role still reads and writes", async () => {
    await load({ dir: fromRoot('tests', 'fixtures', 'dirty-export'), databaseUrl: asRole(owner), rejectsFile: path.join(fs.mkdtempSync('/tmp/atelier-roles-'), 'rejects.csv') });
    const db = new Db({ connectionString: asRole(app), poolSize: 2 });
    try {
      const api = createApp(db, { log: () => undefined });
      const meta = await request(api).get('/reviews/meta?product_id=1');
      expect(meta.status).toBe(200);
      expect(Object.keys(meta.body.ratings).length).toBeGreaterThan(0);
      expect((await request(api).post('/reviews').send({ product_id: 1, rating: 4, body: LONG_BODY, recommend: true, name: 'after', email: 'a@example.com' })).status).toBe(201);
      await expect(db.query('DROP TABLE atelier.reviews')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await db.close();
    }
  });
});
