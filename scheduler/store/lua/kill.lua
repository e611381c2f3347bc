-- An operator stops a run: a queued one is marked killed at once; a running one gets a kill
-- request that its worker sees on its next heartbeat.
-- uses: now move ended
-- KEYS[1] run            the run hash
-- KEYS[2] queue          its queue list
-- KEYS[3] active         the job's active set
-- KEYS[4] idx_queued     idx:status:queued
-- KEYS[5] idx_killed     idx:status:killed
-- KEYS[6] delayed        the delayed zset
-- KEYS[7] ended_feed     the ended feed list
-- ARGV[1] run_id
-- ARGV[2] reason
-- Returns the run's status before, or '' when there is no such run.
local f = redis.call('HMGET', run, 'status', 'scheduled_for')
if not f[1] then return '' end
if f[1] == 'running' then
  redis.call('HSET', run, 'kill_requested', reason)
elseif f[1] == 'queued' then
  redis.call('LREM', queue, 0, run_id)
  redis.call('ZREM', delayed, run_id)
  redis.call('HSET', run, 'status', 'killed', 'reason', reason, 'finished_at', now)
  redis.call('SREM', active, run_id)
  move(run_id, idx_queued, idx_killed, f[2])
  ended(ended_feed, run_id)
end
return f[1]
