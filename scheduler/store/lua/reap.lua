-- Mark a run lost: when its lease has expired (its worker stopped renewing it), unless Redis
-- itself was unreachable recently: then workers get one lease to renew before anyone judges;
-- or at once, lease or not, when `holder` names the worker that holds it and is known dead
-- (its supervisor saw it die). Its duration runs from its start to now, not to a lease.
-- uses: now move touch retry ended side
-- KEYS[1] running        the running zset (leases)
-- KEYS[2] run            the run hash
-- KEYS[3] active         the job's active set
-- KEYS[4] idx_running    idx:status:running
-- KEYS[5] idx_lost       idx:status:lost
-- KEYS[6] clock          the clock hash
-- KEYS[7] retry_run      the retry's run hash (any key when there is no retry)
-- KEYS[8] delayed        the delayed zset
-- KEYS[9] idx_all        idx:all
-- KEYS[10] idx_job       idx:job
-- KEYS[11] idx_queued    idx:status:queued
-- KEYS[12] ended_feed    the ended feed list
-- KEYS[13] worker_hash   the hash of the worker the run names (any key when none)
-- KEYS[14] out           the run's side key (its long texts)
-- ARGV[1] run_id
-- ARGV[2] reason
-- ARGV[3] clock_gap_ms
-- ARGV[4] lease_ms
-- ARGV[5] retry_id       or ''
-- ARGV[6] retry_delay_ms
-- ARGV[7] retry_attempt
-- ARGV[8] holder         '' to judge by the lease; else the dead worker whose run is lost now
-- Returns 1 when the run was marked lost, 0 otherwise, -1 while waiting after an outage.
touch(clock, tonumber(clock_gap_ms))
if holder == '' then
  local resumed = tonumber(redis.call('HGET', clock, 'resumed') or '0') or 0
  if now - resumed < tonumber(lease_ms) then return -1 end
  local lease = redis.call('ZSCORE', running, run_id)
  if not lease or tonumber(lease) > now then return 0 end
end
local f = redis.call('HMGET', run, 'status', 'scheduled_for', 'started_at', 'worker')
if f[1] ~= 'running' then
  redis.call('ZREM', running, run_id)
  return 0
end
if holder ~= '' and f[4] ~= holder then return 0 end
local started = tonumber(f[3])
if not started or started ~= started or started > now or started < 0 then started = now end
redis.call('ZREM', running, run_id)
redis.call('HSET', run, 'status', 'lost', 'finished_at', now,
  'duration_s', string.format('%.3f', (now - started) / 1000))
redis.call('HDEL', out, 'live_total', 'live_output')
redis.call('HDEL', run, 'kill_requested', 'live_total', 'live_output')
put_reason(run, out, reason, false)
redis.call('SREM', active, run_id)
move(run_id, idx_running, idx_lost, f[2])
if redis.call('HGET', worker_hash, 'current') == run_id then
  redis.call('HDEL', worker_hash, 'current')
end
schedule_retry({retry_run, delayed, idx_all, idx_job, idx_queued, active},
  {retry_id, retry_delay_ms, retry_attempt}, run_id, run)
ended(ended_feed, run_id)
return 1
