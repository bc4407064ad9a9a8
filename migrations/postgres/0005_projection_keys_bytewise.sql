-- The projections' key columns hold identifiers (tenants, ids, states, cause codes, tax ids),
-- never text a person sorts. Byte order ("C") is the right order for them, and it lets
-- PostgreSQL compare with memcmp and abbreviated keys instead of the locale's collation:
-- index builds (a rebuild recreates every index) and index lookups get cheaper.
ALTER TABLE proj_invoices
    ALTER COLUMN tenant TYPE text COLLATE "C",
    ALTER COLUMN invoice_id TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C",
    ALTER COLUMN number TYPE text COLLATE "C",
    ALTER COLUMN state TYPE text COLLATE "C",
    ALTER COLUMN last_cause_kind TYPE text COLLATE "C";
ALTER TABLE proj_timeline
    ALTER COLUMN tenant TYPE text COLLATE "C",
    ALTER COLUMN subject TYPE text COLLATE "C",
    ALTER COLUMN subject_id TYPE text COLLATE "C";
ALTER TABLE proj_timeline_tenants
    ALTER COLUMN tenant TYPE text COLLATE "C";
ALTER TABLE proj_failures
    ALTER COLUMN tenant TYPE text COLLATE "C",
    ALTER COLUMN cause_kind TYPE text COLLATE "C";
ALTER TABLE proj_failure_invoices
    ALTER COLUMN tenant TYPE text COLLATE "C",
    ALTER COLUMN invoice_id TYPE text COLLATE "C";
ALTER TABLE proj_connections
    ALTER COLUMN tenant TYPE text COLLATE "C";
ALTER TABLE proj_customers
    ALTER COLUMN tenant TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C",
    ALTER COLUMN tax_id TYPE text COLLATE "C";
