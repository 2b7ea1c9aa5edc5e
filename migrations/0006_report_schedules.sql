-- Butler Analytics schema, version 6: up to which fire time each report schedule has
-- been handled, so that the periods missed while no pipeline ran are made up once,
-- and that several instances generate each scheduled report once.
CREATE TABLE report_schedule_fires (
  schedule TEXT PRIMARY KEY,  -- '<type> <cron>', e.g. 'daily 0 6 * * *'
  last_fire TEXT NOT NULL     -- UTC, milliseconds
);
