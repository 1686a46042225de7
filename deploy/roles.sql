-- Least-privilege roles for the Atelier reviews database. Run once as an administrator:
--   psql "postgres://admin@db.internal/postgres" -v owner_password=… -v app_password=… -f deploy/roles.sql
-- atelier_owner owns the schema: migrations (`npm run migrate`) and the CSV import run as it.
-- atelier_app is what the API hosts log in as: it reads and writes rows, and can neither
-- create, alter nor drop anything.
CREATE ROLE atelier_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE atelier_app LOGIN PASSWORD :'app_password';
-- The hosts read which timeline a standby streams (pg_stat_wal_receiver), to compare its
-- replay position with the primary's only on one timeline: without it no standby read is
-- proven fresh and reads stay on the primary (src/db/replicas.ts). Read-only statistics.
GRANT pg_read_all_stats TO atelier_app;
CREATE DATABASE atelier OWNER atelier_owner;
\connect atelier
SET ROLE atelier_owner;
-- Nobody but the owner creates objects in public (PostgreSQL < 15 allowed everyone).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO atelier_app;
-- Whatever the owner creates from now on (the migrations' schema and tables, and every
-- import's new schema and tables, which replace the old ones at the swap) is usable by
-- the app role without a further GRANT.
ALTER DEFAULT PRIVILEGES FOR ROLE atelier_owner GRANT USAGE ON SCHEMAS TO atelier_app;
ALTER DEFAULT PRIVILEGES FOR ROLE atelier_owner GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO atelier_app;
ALTER DEFAULT PRIVILEGES FOR ROLE atelier_owner GRANT USAGE, SELECT ON SEQUENCES TO atelier_app;
RESET ROLE;
