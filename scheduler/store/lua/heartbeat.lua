-- A worker says it is alive and extends the lease of the run it is executing. When Redis lost
-- the run's record meanwhile (restarted empty, flushed), the worker's copy of it as claimed
-- (`record`) is written back, checked first, so the run is seen running again: overlap rules
-- hold (an overlap="skip" job starts no second run) and the report lands on a record.
-- uses: now touch move ended side validate
-- KEYS[1] workers        the workers zset
-- KEYS[2] worker_hash    the worker hash
-- KEYS[3] running        the running zset (leases)
-- KEYS[4] run            the run hash (any key when there is no run)
-- KEYS[5] clock          the clock hash
-- KEYS[6] active         the job's active set (any key when there is no run)
-- KEYS[7] idx_all        idx:all
-- KEYS[8] idx_job        idx:job of the run's job (any key when there is no run)
-- KEYS[9] idx_running    idx:status:running
-- KEYS[10] out           the run's side key (any key when there is no run): live output
-- ARGV[1] worker
-- ARGV[2] lease_ms
-- ARGV[3] run_id         or ''
-- ARGV[4] horse_pid      or ''
-- ARGV[5] clock_gap_ms
-- ARGV[6] live_total     bytes of output so far, or '' when unchanged
-- ARGV[7] live_output    the output's tail
-- ARGV[8] record         '' or the run's fields as claimed (a JSON object of strings), to
--                        write back when the record is gone
-- ARGV[9..] info         worker field, value pairs
-- Returns {held, kill request, gone}: held is 1 when the worker still holds the run (or has
-- none); kill request is the reason an operator or a replacing fire asked to stop the run, or
-- ''; gone is 1 when the run has no record (and none was written back), else 0.
touch(clock, tonumber(clock_gap_ms))
local expiry = now + tonumber(lease_ms)
redis.call('ZADD', workers, expiry, worker)
if #ARGV >= info then redis.call('HSET', worker_hash, unpack(ARGV, info)) end
redis.call('HSET', worker_hash, 'heartbeat_at', now)
redis.call('PEXPIRE', worker_hash, tonumber(lease_ms) * 10)
if run_id == '' then return {1, '', 0} end
if redis.call('EXISTS', run) == 0 then
  if record == '' then return {0, '', 1} end
  local ok, fields = pcall(cjson.decode, record)
  if not ok or type(fields) ~= 'table' then return {0, '', 1} end
  local flat = {}
  for name, value in pairs(fields) do
    if type(name) ~= 'string' or type(value) ~= 'string' then return {0, '', 1} end
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  if unusable_fields(fields, run_id) or fields['status'] ~= 'running'
      or fields['worker'] ~= worker then
    return {0, '', 1}
  end
  put_fields(run, out, flat, 1)
  local score = tonumber(fields['scheduled_for'])
  redis.call('ZADD', idx_all, score, run_id)
  redis.call('ZADD', idx_job, score, run_id)
  redis.call('ZADD', idx_running, score, run_id)
  redis.call('SADD', active, run_id)
  redis.call('HSET', worker_hash, 'current', run_id)
end
local f = redis.call('HMGET', run, 'status', 'worker', 'kill_requested')
if f[1] ~= 'running' or f[2] ~= worker then return {0, '', 0} end
redis.call('ZADD', running, expiry, run_id)
if horse_pid ~= '' then redis.call('HSET', run, 'pid', horse_pid) end
if live_total ~= '' then put_fields(run, out, {'live_total', live_total, 'live_output', live_output}, 1) end
return {1, f[3] or '', 0}
