-- A worker says it is alive and extends the lease of the run it is executing.
-- uses: now touch
-- KEYS[1] workers        the workers zset
-- KEYS[2] worker_hash    the worker hash
-- KEYS[3] running        the running zset (leases)
-- KEYS[4] run            the run hash (any key when there is no run)
-- KEYS[5] clock          the clock hash
-- ARGV[1] worker
-- ARGV[2] lease_ms
-- ARGV[3] run_id         or ''
-- ARGV[4] horse_pid      or ''
-- ARGV[5] clock_gap_ms
-- ARGV[6] live_total     bytes of output so far, or '' when unchanged
-- ARGV[7] live_output    the output's tail
-- ARGV[8..] info         worker field, value pairs
-- Returns {held, kill request}: held is 1 when the worker still holds the run (or has none);
-- kill request is the reason an operator or a replacing fire asked to stop the run, or ''.
touch(clock, tonumber(clock_gap_ms))
local expiry = now + tonumber(lease_ms)
redis.call('ZADD', workers, expiry, worker)
if #ARGV >= info then redis.call('HSET', worker_hash, unpack(ARGV, info)) end
redis.call('HSET', worker_hash, 'heartbeat_at', now)
redis.call('PEXPIRE', worker_hash, tonumber(lease_ms) * 10)
if run_id == '' then return {1, ''} end
local f = redis.call('HMGET', run, 'status', 'worker', 'kill_requested')
if f[1] ~= 'running' or f[2] ~= worker then return {0, ''} end
redis.call('ZADD', running, expiry, run_id)
if horse_pid ~= '' then redis.call('HSET', run, 'pid', horse_pid) end
if live_total ~= '' then redis.call('HSET', run, 'live_total', live_total, 'live_output', live_output) end
return {1, f[3] or ''}
