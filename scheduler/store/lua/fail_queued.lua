-- A worker refuses a run it will not execute, without starting it: queued -> failed (its
-- job is not in the worker's jobs folder) or queued -> skipped (its job was removed).
-- uses: now move ended side
-- KEYS[1] inbox          the worker's inbox list
-- KEYS[2] run            the run hash
-- KEYS[3] active         the job's active set
-- KEYS[4] idx_queued     idx:status:queued
-- KEYS[5] idx_final      idx:status of the status it gets (failed or skipped)
-- KEYS[6] ended_feed     the ended feed list
-- KEYS[7] out            the run's side key (its long texts)
-- ARGV[1] run_id
-- ARGV[2] worker
-- ARGV[3] reason
-- ARGV[4] status         'failed' or 'skipped'
-- Returns 1 when the run was refused, 0 when it was no longer queued.
if status ~= 'failed' and status ~= 'skipped' then
  return redis.error_reply('fail_queued: status must be failed or skipped, not ' .. status)
end
redis.call('LREM', inbox, 1, run_id)
local f = redis.call('HMGET', run, 'status', 'scheduled_for')
if f[1] ~= 'queued' then return 0 end
redis.call('HSET', run, 'status', status, 'worker', worker, 'finished_at', now)
put_reason(run, out, reason, false)
redis.call('SREM', active, run_id)
move(run_id, idx_queued, idx_final, f[2])
ended(ended_feed, run_id)
return 1
