-- The worker records the final status of a run it holds, and schedules its next attempt.
-- uses: now move retry ended side
-- KEYS[1] run            the run hash
-- KEYS[2] running        the running zset (leases)
-- KEYS[3] active         the job's active set
-- KEYS[4] idx_running    idx:status:running
-- KEYS[5] idx_final      idx:status of the final status
-- KEYS[6] worker_hash    the worker hash
-- KEYS[7] retry_run      the retry's run hash (any key when there is no retry)
-- KEYS[8] delayed        the delayed zset
-- KEYS[9] idx_all        idx:all
-- KEYS[10] idx_job       idx:job
-- KEYS[11] idx_queued    idx:status:queued
-- KEYS[12] ended_feed    the ended feed list
-- KEYS[13] out           the run's side key (its long texts)
-- ARGV[1] run_id
-- ARGV[2] worker
-- ARGV[3] status         the final status
-- ARGV[4] duration_ms
-- ARGV[5] retry_id       or ''
-- ARGV[6] retry_delay_ms
-- ARGV[7] retry_attempt
-- ARGV[8..] fields       field, value pairs (reason, exit_code, signal, pid, output, ...)
-- Returns {1, status} when recorded (also when this exact report was recorded before),
-- {0, current status} when the run was not held by this worker ('' if it does not exist).
local f = redis.call('HMGET', run, 'status', 'worker', 'started_at', 'scheduled_for')
if f[1] == status and f[2] == worker then return {1, status} end
if f[1] ~= 'running' or f[2] ~= worker then
  if f[1] then
    local late = {}
    for i = fields, #ARGV, 2 do if ARGV[i] ~= 'output' then late[ARGV[i]] = ARGV[i + 1] end end
    late['status'] = status
    late['worker'] = worker
    late['reported_at'] = now
    put_fields(run, out, {'late_report', cjson.encode(late)}, 1)
  end
  return {0, f[1] or ''}
end
local duration = tonumber(duration_ms)
local started = tonumber(f[3])
if not started or started ~= started or math.abs(started) == math.huge then
  started = now - duration  -- no usable start (a damaged record): it ended now
end
redis.call('HSET', run, 'status', status, 'finished_at', started + duration,
  'duration_s', string.format('%.3f', duration / 1000))
redis.call('HDEL', out, 'live_total', 'live_output')
redis.call('HDEL', run, 'kill_requested', 'live_total', 'live_output')
put_fields(run, out, ARGV, fields)
redis.call('ZREM', running, run_id)
redis.call('SREM', active, run_id)
move(run_id, idx_running, idx_final, f[4])
if redis.call('HGET', worker_hash, 'current') == run_id then
  redis.call('HDEL', worker_hash, 'current')
end
schedule_retry({retry_run, delayed, idx_all, idx_job, idx_queued, active},
  {retry_id, retry_delay_ms, retry_attempt}, run_id, run)
ended(ended_feed, run_id)
return {1, status}
