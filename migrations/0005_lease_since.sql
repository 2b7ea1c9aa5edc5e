-- Butler Analytics schema, version 5: when each lease was taken, for status replies.
-- A lease now lasts seconds and is renewed while its holder runs the job.
ALTER TABLE agg_job_leases ADD COLUMN since TEXT;
