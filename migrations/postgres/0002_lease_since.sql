-- Butler Analytics PostgreSQL schema, version 2: when each lease was taken, for status
-- replies. A lease now lasts seconds and is renewed while its holder runs the job.
ALTER TABLE agg_job_leases ADD COLUMN since timestamptz(3) NOT NULL DEFAULT now();
ALTER TABLE agg_job_leases ALTER COLUMN since DROP DEFAULT;
