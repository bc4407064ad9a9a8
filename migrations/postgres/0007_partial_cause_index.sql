-- Only invoices that failed have a cause, and support filters by cause to find those. Indexing
-- just them keeps the index small, and a projection rebuild (which recreates every index)
-- no longer sorts every invoice for it.
DROP INDEX proj_invoices_cause;
CREATE INDEX proj_invoices_cause ON proj_invoices (tenant, last_cause_kind, billed_position)
    WHERE last_cause_kind IS NOT NULL;
