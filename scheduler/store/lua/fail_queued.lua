-- A worker refuses a run it cannot execute (job not in its jobs folder): queued -> failed.
-- uses: now move ended
-- KEYS[1] inbox          the worker's inbox list
-- KEYS[2] run            the run hash
-- KEYS[3] active         the job's active set
-- KEYS[4] idx_queued     idx:status:queued
-- KEYS[5] idx_failed     idx:status:failed
-- KEYS[6] ended_feed     the ended feed list
-- ARGV[1] run_id
-- ARGV[2] worker
-- ARGV[3] reason
redis.call('LREM', inbox, 1, run_id)
local f = redis.call('HMGET', run, 'status', 'scheduled_for')
if f[1] ~= 'queued' then return 0 end
redis.call('HSET', run, 'status', 'failed', 'reason', reason, 'worker', worker,
  'finished_at', now)
redis.call('SREM', active, run_id)
move(run_id, idx_queued, idx_failed, f[2])
ended(ended_feed, run_id)
return 1
