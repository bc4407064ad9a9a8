-- Every lookup on these keys gives all their identifier columns (an invoice's timeline is
-- tenant + subject + id, an invoice is tenant + id), so their order inside the key is free.
-- Leading with the many-valued identifier instead of the few-valued tenant lets PostgreSQL
-- sort by an abbreviated first column when it builds the index, which a projection rebuild
-- does for every index: the timeline's key builds in about half the time (measured, 200k
-- rows). Indexes that serve a range or an order within a tenant keep the tenant first.
ALTER TABLE proj_timeline
    DROP CONSTRAINT proj_timeline_pkey,
    ADD CONSTRAINT proj_timeline_pkey PRIMARY KEY (subject_id, tenant, subject, position);
ALTER TABLE proj_invoices
    DROP CONSTRAINT proj_invoices_pkey,
    ADD CONSTRAINT proj_invoices_pkey PRIMARY KEY (invoice_id, tenant);
DROP INDEX proj_invoices_number;
CREATE INDEX proj_invoices_number ON proj_invoices (number, tenant);
DROP INDEX proj_invoices_customer;
CREATE INDEX proj_invoices_customer ON proj_invoices (customer_id, tenant, billed_position);
ALTER TABLE proj_failure_invoices
    DROP CONSTRAINT proj_failure_invoices_pkey,
    ADD CONSTRAINT proj_failure_invoices_pkey PRIMARY KEY (invoice_id, tenant);
