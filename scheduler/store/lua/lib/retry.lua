-- Creates the next attempt of a run, due at a given time, in the delayed set.
-- R = {run key, delayed zset, idx:all, idx:job, idx:status:queued, active set}
-- A = {retry id, delay ms, attempt}; src_id/src_key name the run that ended.
local function schedule_retry(R, A, src_id, src_key)
  if A[1] == '' then return end
  local due = now + tonumber(A[2])
  local f = redis.call('HMGET', src_key, 'job', 'scheduled_for', 'queue', 'timeout_s',
    'retries', 'retry_backoff_s', 'retry_on')
  local score = score_of(f[2])
  redis.call('HSET', R[1], 'id', A[1], 'job', f[1] or '', 'scheduled_for', score,
    'status', 'queued', 'trigger', 'retry', 'attempt', A[3], 'retry_of', src_id,
    'enqueued_at', now, 'not_before', due)
  for i, name in ipairs({'queue', 'timeout_s', 'retries', 'retry_backoff_s', 'retry_on'}) do
    if f[i + 2] then redis.call('HSET', R[1], name, f[i + 2]) end
  end
  redis.call('HSET', src_key, 'retry', A[1])
  redis.call('ZADD', R[2], due, A[1])
  redis.call('ZADD', R[3], score, A[1])
  redis.call('ZADD', R[4], score, A[1])
  redis.call('ZADD', R[5], score, A[1])
  redis.call('SADD', R[6], A[1])
end
