-- Re-create a finished run whose record vanished (Redis restarted empty) from the worker's
-- copy, so a report is never lost; then, as finish does, schedule its next attempt and put
-- it on the ended feed (metrics and alerts count it). The copy is checked before anything is
-- written: one that cannot be used is refused and nothing is written.
-- uses: now pending move retry ended side validate
-- KEYS[1] run            the run hash
-- KEYS[2] idx_status     idx:status of its status
-- KEYS[3] retry_run      the retry's run hash (any key when there is no retry)
-- KEYS[4] delayed        the delayed zset
-- KEYS[5] idx_all        idx:all
-- KEYS[6] idx_job        idx:job
-- KEYS[7] idx_queued     idx:status:queued
-- KEYS[8] active         the job's active set
-- KEYS[9] ended_feed     the ended feed list
-- KEYS[10] out           the run's side key (its long texts)
-- ARGV[1] run_id
-- ARGV[2] scheduled_ms
-- ARGV[3] retry_id       or ''
-- ARGV[4] retry_delay_ms
-- ARGV[5] retry_attempt
-- ARGV[6..] fields       field, value pairs (all of them)
-- Returns 1 when restored, 0 when a record exists, {'', problem} when the copy is unusable.
if redis.call('EXISTS', run) == 1 then return 0 end
local given = {}
for i = fields, #ARGV, 2 do given[ARGV[i]] = ARGV[i + 1] or '' end
local problem = unusable_fields(given, run_id)
if not problem and (given['status'] == nil or pending[given['status']]) then
  problem = 'field status is not a final status'
end
if not problem and given['scheduled_for'] ~= scheduled_ms then
  problem = 'field scheduled_for differs from its index score'
end
if problem then return {'', problem} end
redis.call('DEL', out)  -- left by a record that is gone: the copy has it all
put_fields(run, out, ARGV, fields)
for _, index in ipairs({idx_all, idx_job, idx_status}) do
  redis.call('ZADD', index, score_of(scheduled_ms), run_id)
end
redis.call('SREM', active, run_id)
schedule_retry({retry_run, delayed, idx_all, idx_job, idx_queued, active},
  {retry_id, retry_delay_ms, retry_attempt}, run_id, run)
ended(ended_feed, run_id)
return 1
