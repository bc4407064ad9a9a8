-- Requests to run a job again that come from outside the job (support's "read it now"):
-- each one bumps the counter, and a job's result is written only if the counter is still
-- what the job read, so a run already under way cannot overwrite a request made meanwhile.
ALTER TABLE sync_work ADD COLUMN asked integer NOT NULL DEFAULT 0;
