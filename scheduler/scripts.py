"""The Lua scripts of the store: one per atomic transition, every key passed in KEYS.

Each opens with a comment listing its KEYS and ARGV slots. Times come from Redis (`TIME`), so
every host agrees on leases and timestamps. Only `store.py` loads and calls them.
"""

# Redis server time in milliseconds.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Appends a run that reached a final status to the feed the scheduler reads for metrics and
# alerts; capped, so it cannot grow without bound when no scheduler reads it.
_ENDED = """
local function ended(feed_key, id)
  redis.call('RPUSH', feed_key, id)
  redis.call('LTRIM', feed_key, -10000, -1)
end
"""

# Moves a run between status indexes: (run id, from index key, to index key, score).
_MOVE = """
local function move(id, from, to, score)
  redis.call('ZREM', from, id)
  redis.call('ZADD', to, score, id)
end
"""

# Creates the next attempt of a run, due at a given time, in the delayed set.
# R = {run key, delayed zset, idx:all, idx:job, idx:status:queued, active set}
# A = {retry id, delay ms, attempt}; src_id/src_key name the run that ended.
_RETRY = """
local function schedule_retry(R, A, src_id, src_key)
  if A[1] == '' then return end
  local due = now + tonumber(A[2])
  local f = redis.call('HMGET', src_key, 'job', 'scheduled_for', 'queue', 'timeout_s',
    'retries', 'retry_backoff_s', 'retry_on')
  redis.call('HSET', R[1], 'id', A[1], 'job', f[1], 'scheduled_for', f[2], 'queue', f[3],
    'status', 'queued', 'trigger', 'retry', 'attempt', A[3], 'retry_of', src_id,
    'enqueued_at', now, 'not_before', due)
  for i, name in ipairs({'timeout_s', 'retries', 'retry_backoff_s', 'retry_on'}) do
    if f[i + 3] then redis.call('HSET', R[1], name, f[i + 3]) end
  end
  redis.call('HSET', src_key, 'retry', A[1])
  redis.call('ZADD', R[2], due, A[1])
  redis.call('ZADD', R[3], f[2], A[1])
  redis.call('ZADD', R[4], f[2], A[1])
  redis.call('ZADD', R[5], f[2], A[1])
  redis.call('SADD', R[6], A[1])
end
"""

ENQUEUE = (
    """
-- Create the runs of a batch of fires. Each fire is judged exactly as if it were enqueued on
-- its own, in order: at most one run per run id, its overlap policy, pause, and for a
-- scheduled fire the guard that it is after the job's last fire (so two schedulers never
-- enqueue it twice). Keys and settings shared by many fires are passed once.
-- KEYS[1] idx:all  KEYS[2] idx:status:queued  KEYS[3] idx:status:skipped
-- KEYS[4] idx:status:missed  KEYS[5] last_fire hash  KEYS[6] paused set  KEYS[7] ended feed
-- KEYS[8 .. 7+q] the queue lists the settings name
-- KEYS[8+q ..] per fire, in order: its run hash, the job's active set, the job's idx:job, then
--   the run hashes of the job's active runs as read just before (queue/replace only)
-- ARGV[1] q, the number of queue lists  ARGV[2] s, the number of settings that follow
-- then s settings, each: overlap policy; '1' for a scheduled fire (require scheduled_for > the
--   job's last fire, advance it, and honour pause) or '0' for a manual run; outcome ('queue',
--   'missed' or 'skipped'); reason for a non-queued outcome; its queue list (1 .. q); m; then
--   m field, value pairs stored as they are (trigger, attempt, queue, timeout_s, ...)
-- then groups of fires that share settings and instant, each: its settings (1 .. s),
--   scheduled_for ms, c, then c fires, each: run id, job, and with overlap queue or replace
--   (outcome 'queue') n and the n ids of the job's active runs as read just before
-- Returns one string: for each fire in turn, created (0/1) directly followed by its status,
-- separated by spaces (e.g. '1queued 0stale'); status 'stale' for an old fire. It stops at a
-- fire whose job's active set changed since it was read ('0retry'), so that the caller can
-- read it again and send that fire and those after it.
"""
    + _NOW
    + _MOVE
    + _ENDED
    + """
-- One fire: its run hash, its job's active set and idx:job, run id, job, scheduled_for ms, its
-- settings, and the n active runs of the job as read before (s.reads): their ids are
-- ARGV[ids + 1 .. ids + n], their run hashes KEYS[hashes + 1 .. hashes + n].
-- Returns created (0/1), status.
local function enqueue(run, active, by_job, id, job, fire_ms, s, n, ids, hashes)
  local existing = redis.call('HGET', run, 'status')
  if existing then return 0, existing end
  local fire = tonumber(fire_ms)
  local policy = s.policy
  if s.reads then
    if redis.call('SCARD', active) ~= n then return 0, 'retry' end
    for i = 1, n do
      if redis.call('SISMEMBER', active, ARGV[ids + i]) == 0 then return 0, 'retry' end
    end
  end
  if s.scheduled then
    local last = redis.call('HGET', KEYS[5], job)
    if last and tonumber(last) >= fire then return 0, 'stale' end
    redis.call('HSET', KEYS[5], job, fire_ms)
  end
  local status = 'queued'
  local reason = s.reason
  local other = KEYS[3]
  if s.outcome ~= 'queue' then
    status = s.outcome
    if status == 'missed' then other = KEYS[4] end
  elseif s.scheduled and redis.call('SISMEMBER', KEYS[6], job) == 1 then
    status = 'skipped'
    reason = 'paused'
  elseif policy == 'skip' then
    local running = redis.call('SRANDMEMBER', active)
    if running then
      status = 'skipped'
      reason = 'overlap=skip: run ' .. running .. ' of this job is still queued or running'
    end
  elseif policy == 'queue' then
    for i = 1, n do
      if redis.call('HGET', KEYS[hashes + i], 'status') == 'queued' then
        status = 'skipped'
        reason = 'overlap=queue: run ' .. ARGV[ids + i] .. ' is already waiting'
        break
      end
    end
  elseif policy == 'replace' then
    for i = 1, n do
      local key, old = KEYS[hashes + i], ARGV[ids + i]
      local st = redis.call('HGET', key, 'status')
      if st == 'running' then
        redis.call('HSET', key, 'kill_requested', 'replaced')
      elseif st == 'queued' then
        redis.call('LREM', s.queue, 0, old)
        redis.call('HSET', key, 'status', 'skipped', 'reason', 'replaced by ' .. id,
          'finished_at', now)
        redis.call('SREM', active, old)
        move(old, KEYS[2], KEYS[3], redis.call('HGET', key, 'scheduled_for'))
        ended(KEYS[7], old)
      end
    end
  end
  redis.call('HSET', run, 'id', id, 'job', job, 'scheduled_for', fire_ms, 'enqueued_at', now,
    'status', status, unpack(s.fields))
  if status == 'queued' then
    redis.call('RPUSH', s.queue, id)
    redis.call('SADD', active, id)
    redis.call('ZADD', KEYS[2], fire, id)
  else
    redis.call('HSET', run, 'reason', reason, 'finished_at', now)
    redis.call('ZADD', other, fire, id)
    ended(KEYS[7], id)
  end
  redis.call('ZADD', KEYS[1], fire, id)
  redis.call('ZADD', by_job, fire, id)
  return 1, status
end

local a = 3
local settings = {}
for i = 1, tonumber(ARGV[2]) do
  local m = tonumber(ARGV[a + 5])
  local s = {policy = ARGV[a], scheduled = ARGV[a + 1] == '1', outcome = ARGV[a + 2],
    reason = ARGV[a + 3], queue = KEYS[7 + tonumber(ARGV[a + 4])],
    fields = {unpack(ARGV, a + 6, a + 5 + 2 * m)}}
  s.reads = (s.policy == 'queue' or s.policy == 'replace') and s.outcome == 'queue'
  settings[i] = s
  a = a + 6 + 2 * m
end
local k = 8 + tonumber(ARGV[1])
local out = {}
local last = #ARGV
local s, fire_ms, left = nil, nil, 0
while a <= last do
  if left == 0 then
    s, fire_ms, left = settings[tonumber(ARGV[a])], ARGV[a + 1], tonumber(ARGV[a + 2])
    a = a + 3
  else
    local id, job = ARGV[a], ARGV[a + 1]
    a = a + 2
    local n = 0
    if s.reads then
      n = tonumber(ARGV[a])
      a = a + 1 + n
    end
    local created, status = enqueue(KEYS[k], KEYS[k + 1], KEYS[k + 2], id, job, fire_ms, s, n,
      a - 1 - n, k + 2)
    out[#out + 1] = created .. status
    if status == 'retry' then break end
    left = left - 1
    k = k + 3 + n
  end
end
return table.concat(out, ' ')
"""
)


CLAIM = (
    """
-- A worker takes a run it moved into its inbox: queued -> running, with a lease; or
-- queued -> missed when it starts later than the run's misfire_grace_s allows.
-- KEYS[1] inbox list  KEYS[2] run hash  KEYS[3] running zset
-- KEYS[4] idx:status:queued  KEYS[5] idx:status:running  KEYS[6] worker hash
-- KEYS[7] idx:status:missed  KEYS[8] active set of the job  KEYS[9] ended feed list
-- ARGV[1] run id  ARGV[2] worker id  ARGV[3] lease ms
-- Returns the run's fields as a flat list, or {} when it is not to be run.
"""
    + _NOW
    + _MOVE
    + _ENDED
    + """
redis.call('LREM', KEYS[1], 1, ARGV[1])
local f = redis.call('HMGET', KEYS[2], 'status', 'scheduled_for', 'misfire_grace_s', 'trigger')
if f[1] ~= 'queued' then return {} end
if f[3] and (f[4] == 'schedule' or f[4] == 'catchup') then
  local late = now - tonumber(f[2])
  if late > tonumber(f[3]) * 1000 then
    redis.call('HSET', KEYS[2], 'status', 'missed', 'finished_at', now, 'reason',
      string.format('not started within misfire_grace %ss of its fire time (%.3fs late)',
        f[3], late / 1000))
    redis.call('SREM', KEYS[8], ARGV[1])
    move(ARGV[1], KEYS[4], KEYS[7], f[2])
    ended(KEYS[9], ARGV[1])
    return {}
  end
end
redis.call('HSET', KEYS[2], 'status', 'running', 'started_at', now, 'worker', ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
move(ARGV[1], KEYS[4], KEYS[5], f[2])
redis.call('HSET', KEYS[6], 'current', ARGV[1])
return redis.call('HGETALL', KEYS[2])
"""
)

# Records that Redis answered now; notes when it had not been reachable for a while, so
# that leases are not judged expired by a clock that ran while nobody could renew them.
_TOUCH = """
local function touch(clock_key, gap_ms)
  local last = tonumber(redis.call('HGET', clock_key, 'last') or '0')
  if last > 0 and now - last > gap_ms then redis.call('HSET', clock_key, 'resumed', now) end
  redis.call('HSET', clock_key, 'last', now)
end
"""

HEARTBEAT = (
    """
-- A worker says it is alive and extends the lease of the run it is executing.
-- KEYS[1] workers zset  KEYS[2] worker hash  KEYS[3] running zset  KEYS[4] run hash (or any)
-- KEYS[5] clock hash
-- ARGV[1] worker id  ARGV[2] lease ms  ARGV[3] run id or ''  ARGV[4] horse pid or ''
-- ARGV[5] clock gap ms  ARGV[6] bytes of output so far, or '' when unchanged
-- ARGV[7] the output's tail  ARGV[8..] worker field, value pairs
-- Returns {held, kill request}: held is 1 when the worker still holds the run (or has none);
-- kill request is the reason an operator or a replacing fire asked to stop the run, or ''.
"""
    + _NOW
    + _TOUCH
    + """
touch(KEYS[5], tonumber(ARGV[5]))
local expiry = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
if #ARGV > 7 then redis.call('HSET', KEYS[2], unpack(ARGV, 8)) end
redis.call('HSET', KEYS[2], 'heartbeat_at', now)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 10)
if ARGV[3] == '' then return {1, ''} end
local f = redis.call('HMGET', KEYS[4], 'status', 'worker', 'kill_requested')
if f[1] ~= 'running' or f[2] ~= ARGV[1] then return {0, ''} end
redis.call('ZADD', KEYS[3], expiry, ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[4], 'pid', ARGV[4]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[4], 'live_total', ARGV[6], 'live_output', ARGV[7]) end
return {1, f[3] or ''}
"""
)

FINISH = (
    """
-- The worker records the final status of a run it holds, and schedules its next attempt.
-- KEYS[1] run hash  KEYS[2] running zset  KEYS[3] active set of the job
-- KEYS[4] idx:status:running  KEYS[5] idx:status of the final status  KEYS[6] worker hash
-- KEYS[7] retry run hash (or any)  KEYS[8] delayed zset  KEYS[9] idx:all  KEYS[10] idx:job
-- KEYS[11] idx:status:queued  KEYS[12] ended feed list
-- ARGV[1] run id  ARGV[2] worker id  ARGV[3] final status  ARGV[4] duration ms
-- ARGV[5] retry id or ''  ARGV[6] retry delay ms  ARGV[7] retry attempt
-- ARGV[8..] field, value pairs (reason, exit_code, signal, pid, output, error, ...)
-- Returns {1, status} when recorded (also when this exact report was recorded before),
-- {0, current status} when the run was not held by this worker ('' if it does not exist).
"""
    + _NOW
    + _MOVE
    + _RETRY
    + _ENDED
    + """
local f = redis.call('HMGET', KEYS[1], 'status', 'worker', 'started_at', 'scheduled_for')
if f[1] == ARGV[3] and f[2] == ARGV[2] then return {1, ARGV[3]} end
if f[1] ~= 'running' or f[2] ~= ARGV[2] then
  if f[1] then
    local late = {}
    for i = 8, #ARGV, 2 do if ARGV[i] ~= 'output' then late[ARGV[i]] = ARGV[i + 1] end end
    late['status'] = ARGV[3]
    late['worker'] = ARGV[2]
    late['reported_at'] = now
    redis.call('HSET', KEYS[1], 'late_report', cjson.encode(late))
  end
  return {0, f[1] or ''}
end
local duration = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'finished_at', tonumber(f[3]) + duration,
  'duration_s', string.format('%.3f', duration / 1000))
for i = 8, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HDEL', KEYS[1], 'kill_requested', 'live_total', 'live_output')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
move(ARGV[1], KEYS[4], KEYS[5], f[4])
if redis.call('HGET', KEYS[6], 'current') == ARGV[1] then redis.call('HDEL', KEYS[6], 'current') end
schedule_retry({KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[3]},
  {ARGV[5], ARGV[6], ARGV[7]}, ARGV[1], KEYS[1])
ended(KEYS[12], ARGV[1])
return {1, ARGV[3]}
"""
)

RESTORE = (
    """
-- Re-create a finished run whose record vanished (Redis restarted empty) from the worker's
-- copy, so a report is never lost.
-- KEYS[1] run hash  KEYS[2] idx:all  KEYS[3] idx:job  KEYS[4] idx:status of its status
-- ARGV[1] run id  ARGV[2] scheduled_for ms  ARGV[3..] field, value pairs (all of them)
"""
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
for i = 2, 4 do redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1]) end
return 1
"""
)

FAIL_QUEUED = (
    """
-- A worker refuses a run it cannot execute (job not in its jobs folder): queued -> failed.
-- KEYS[1] inbox list  KEYS[2] run hash  KEYS[3] active set  KEYS[4] idx:status:queued
-- KEYS[5] idx:status:failed  KEYS[6] ended feed list
-- ARGV[1] run id  ARGV[2] worker id  ARGV[3] reason
"""
    + _NOW
    + _MOVE
    + _ENDED
    + """
redis.call('LREM', KEYS[1], 1, ARGV[1])
local f = redis.call('HMGET', KEYS[2], 'status', 'scheduled_for')
if f[1] ~= 'queued' then return 0 end
redis.call('HSET', KEYS[2], 'status', 'failed', 'reason', ARGV[3], 'worker', ARGV[2],
  'finished_at', now)
redis.call('SREM', KEYS[3], ARGV[1])
move(ARGV[1], KEYS[4], KEYS[5], f[2])
ended(KEYS[6], ARGV[1])
return 1
"""
)

REAP = (
    """
-- Mark a run lost when its lease has expired (its worker stopped renewing it), unless Redis
-- itself was unreachable recently: then workers get one lease to renew before anyone judges.
-- KEYS[1] running zset  KEYS[2] run hash  KEYS[3] active set  KEYS[4] idx:status:running
-- KEYS[5] idx:status:lost  KEYS[6] clock hash
-- KEYS[7] retry run hash (or any)  KEYS[8] delayed zset  KEYS[9] idx:all  KEYS[10] idx:job
-- KEYS[11] idx:status:queued  KEYS[12] ended feed list
-- ARGV[1] run id  ARGV[2] reason  ARGV[3] clock gap ms  ARGV[4] lease ms
-- ARGV[5] retry id or ''  ARGV[6] retry delay ms  ARGV[7] retry attempt
-- Returns 1 when the run was marked lost, 0 otherwise, -1 while waiting after an outage.
"""
    + _NOW
    + _MOVE
    + _TOUCH
    + _RETRY
    + _ENDED
    + """
touch(KEYS[6], tonumber(ARGV[3]))
local resumed = tonumber(redis.call('HGET', KEYS[6], 'resumed') or '0')
if now - resumed < tonumber(ARGV[4]) then return -1 end
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lease or tonumber(lease) > now then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local f = redis.call('HMGET', KEYS[2], 'status', 'scheduled_for', 'started_at')
if f[1] ~= 'running' then return 0 end
local started = tonumber(f[3]) or now
redis.call('HSET', KEYS[2], 'status', 'lost', 'reason', ARGV[2], 'finished_at', now,
  'duration_s', string.format('%.3f', (now - started) / 1000))
redis.call('SREM', KEYS[3], ARGV[1])
move(ARGV[1], KEYS[4], KEYS[5], f[2])
schedule_retry({KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[3]},
  {ARGV[5], ARGV[6], ARGV[7]}, ARGV[1], KEYS[2])
ended(KEYS[12], ARGV[1])
return 1
"""
)

PROMOTE = (
    """
-- Move a retry whose backoff has passed from the delayed set into its queue.
-- KEYS[1] delayed zset  KEYS[2] queue list  KEYS[3] run hash
-- ARGV[1] run id
"""
    + _NOW
    + """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > now then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[3], 'status') ~= 'queued' then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""
)

KILL = (
    """
-- An operator stops a run: a queued one is marked killed at once; a running one gets a kill
-- request that its worker sees on its next heartbeat.
-- KEYS[1] run hash  KEYS[2] queue list  KEYS[3] active set  KEYS[4] idx:status:queued
-- KEYS[5] idx:status:killed  KEYS[6] delayed zset  KEYS[7] ended feed list
-- ARGV[1] run id  ARGV[2] reason
-- Returns the run's status before, or '' when there is no such run.
"""
    + _NOW
    + _MOVE
    + _ENDED
    + """
local f = redis.call('HMGET', KEYS[1], 'status', 'scheduled_for')
if not f[1] then return '' end
if f[1] == 'running' then
  redis.call('HSET', KEYS[1], 'kill_requested', ARGV[2])
elseif f[1] == 'queued' then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  redis.call('ZREM', KEYS[6], ARGV[1])
  redis.call('HSET', KEYS[1], 'status', 'killed', 'reason', ARGV[2], 'finished_at', now)
  redis.call('SREM', KEYS[3], ARGV[1])
  move(ARGV[1], KEYS[4], KEYS[5], f[2])
  ended(KEYS[7], ARGV[1])
end
return f[1]
"""
)

REQUEUE_INBOX = """
-- Put a run that a worker moved into its inbox but will not claim (the worker died, or gives
-- it back) at the head of its queue.
-- KEYS[1] inbox list  KEYS[2] queue list  KEYS[3] run hash
-- ARGV[1] run id
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1])
if removed == 0 then return 0 end
if redis.call('HGET', KEYS[3], 'status') ~= 'queued' then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"""

DROP = """
-- Forget a finished run (retention): its hash and every index entry.
-- KEYS[1] run hash  KEYS[2] idx:all  KEYS[3] idx:job  KEYS[4..] idx:status of every status
-- ARGV[1] run id
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""

NEWEST_IDS = """
-- The ids of each job's newest runs in a fire-time window, one string per job (ids joined
-- by newlines, newest first): thousands of ids cost one reply, not thousands.
-- KEYS[1..] idx:job of each job
-- ARGV[1] highest score ('+inf')  ARGV[2] lowest score ('-inf')  ARGV[3] ids per job
local out = {}
for i = 1, #KEYS do
  local ids = redis.call('ZREVRANGEBYSCORE', KEYS[i], ARGV[1], ARGV[2], 'LIMIT', 0,
    tonumber(ARGV[3]))
  out[i] = table.concat(ids, '\\n')
end
return out
"""

RUN_ROWS = """
-- A few fields of many runs in one call, for views over thousands of runs (the dashboard's
-- strips and timelines).
-- KEYS[1..] run hashes
-- ARGV[1..] field names; the first must be present on every run, the last is free text
-- Reply: one string: a row per key (empty for a vanished run) separated by byte 30, fields
-- by byte 31 (those two bytes in the free-text field become spaces; a missing field is empty).
local rows = {}
local n = #ARGV
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], unpack(ARGV))
  if v[1] then
    for k = 1, n do v[k] = v[k] or '' end
    v[n] = (string.gsub(v[n], '[\\30\\31]', ' '))
    rows[i] = table.concat(v, '\\31')
  else
    rows[i] = ''
  end
end
return table.concat(rows, '\\30')
"""
