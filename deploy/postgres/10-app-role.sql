-- The role web, worker and beat connect as (SPEC §9.4): not the owner of any table, so it
-- cannot change, empty or unprotect the audit trail. `migrate` runs as the owner (the image's
-- POSTGRES_USER) and grants this role its rights (audit/roles.py). Runs once, on a new volume;
-- on an existing one run it by hand (docs/deployment.md).
CREATE ROLE oversight_app LOGIN PASSWORD 'oversight_app' NOSUPERUSER NOCREATEDB NOCREATEROLE;
