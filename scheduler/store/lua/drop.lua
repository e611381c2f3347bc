-- Forget a finished run (retention): its record, its side key and every index entry.
-- uses: pending
-- KEYS[1] run            the run hash
-- KEYS[2] idx_all        idx:all
-- KEYS[3] idx_job        idx:job
-- KEYS[4] out            the run's side key (its long texts)
-- KEYS[5..] idx_statuses idx:status of every status, and the job's index of fires not run
-- ARGV[1] run_id
local status = redis.call('HGET', run, 'status')
if pending[status] then return 0 end
redis.call('DEL', run, out)
redis.call('ZREM', idx_all, run_id)
redis.call('ZREM', idx_job, run_id)
for i = idx_statuses, #KEYS do redis.call('ZREM', KEYS[i], run_id) end
return 1
