-- A worker takes a run it moved into its inbox: queued -> running, with a lease; or
-- queued -> missed when it starts later than the run's misfire_grace_s allows. Asked again by
-- the worker that holds it (its reply was lost on the way), it answers again. A record that
-- cannot be used is set aside (failed, the reason naming the field) before anything else
-- is written.
-- uses: now move ended side validate
-- KEYS[1] inbox          the worker's inbox list
-- KEYS[2] run            the run hash
-- KEYS[3] running        the running zset (leases)
-- KEYS[4] idx_queued     idx:status:queued
-- KEYS[5] idx_running    idx:status:running
-- KEYS[6] worker_hash    the worker hash
-- KEYS[7] idx_missed     idx:status:missed
-- KEYS[8] active         the job's active set
-- KEYS[9] ended_feed     the ended feed list
-- KEYS[10] idx_failed    idx:status:failed
-- KEYS[11] out           the run's side key (its long texts)
-- ARGV[1] run_id
-- ARGV[2] worker
-- ARGV[3] lease_ms
-- Returns the run's fields as a flat list, {} when it is not to be run, or {'', reason}
-- when it was set aside.
redis.call('LREM', inbox, 1, run_id)
local f = redis.call('HMGET', run, 'status', 'scheduled_for', 'misfire_grace_s', 'trigger',
  'worker')
if f[1] == 'running' and f[5] == worker then return redis.call('HGETALL', run) end
if f[1] ~= 'queued' then return {} end
local problem = unusable(run, run_id)
if problem then
  set_aside(run, out, run_id, problem, idx_queued, idx_failed, active, ended_feed)
  return {'', problem}
end
if f[3] and f[3] ~= '' and (f[4] == 'schedule' or f[4] == 'catchup') then
  local late = now - tonumber(f[2])
  if late > tonumber(f[3]) * 1000 then
    redis.call('HSET', run, 'status', 'missed', 'finished_at', now)
    put_reason(run, out, string.format(
      'not started within misfire_grace %ss of its fire time (%.3fs late)', f[3], late / 1000),
      false)
    redis.call('SREM', active, run_id)
    move(run_id, idx_queued, idx_missed, f[2])
    ended(ended_feed, run_id)
    return {}
  end
end
redis.call('HSET', run, 'status', 'running', 'started_at', now, 'worker', worker)
redis.call('ZADD', running, now + tonumber(lease_ms), run_id)
move(run_id, idx_queued, idx_running, f[2])
redis.call('HSET', worker_hash, 'current', run_id)
return redis.call('HGETALL', run)
