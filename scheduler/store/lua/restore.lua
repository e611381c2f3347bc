-- Re-create a finished run whose record vanished (Redis restarted empty) from the worker's
-- copy, so a report is never lost.
-- KEYS[1] run            the run hash
-- KEYS[2] idx_all        idx:all
-- KEYS[3] idx_job        idx:job
-- KEYS[4] idx_status     idx:status of its status
-- ARGV[1] run_id
-- ARGV[2] scheduled_ms
-- ARGV[3..] fields       field, value pairs (all of them)
if redis.call('EXISTS', run) == 1 then return 0 end
redis.call('HSET', run, unpack(ARGV, fields))
for _, index in ipairs({idx_all, idx_job, idx_status}) do
  redis.call('ZADD', index, scheduled_ms, run_id)
end
return 1
