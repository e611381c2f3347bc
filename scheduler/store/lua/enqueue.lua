-- Create the runs of a batch of fires. Each fire is judged exactly as if it were enqueued on
-- its own, in order: at most one run per run id, its overlap policy, pause, and for a
-- scheduled fire the guard that it is after the job's last fire (so two schedulers never
-- enqueue it twice). Keys and settings shared by many fires are passed once.
-- A fire whose overlap policy looks at the job's active runs (skip, queue, replace) is held,
-- nothing written, while Redis may not know yet of runs still running somewhere: for hold_ms
-- after Redis was found empty (the epoch mark missing: restarted empty, flushed), which gives
-- each worker a heartbeat to write back the record of the run it holds.
-- uses: now move ended side
-- KEYS[1] idx_all        idx:all
-- KEYS[2] idx_queued     idx:status:queued
-- KEYS[3] idx_skipped    idx:status:skipped
-- KEYS[4] idx_missed     idx:status:missed
-- KEYS[5] last_fire      the last_fire hash
-- KEYS[6] paused         the paused set
-- KEYS[7] ended_feed     the ended feed list
-- KEYS[8] epoch          the epoch mark (set while Redis holds our data)
-- KEYS[9] hold           until when (ms) such fires are held, after Redis was found empty
-- KEYS[10..] batch_keys   first the q queue lists the settings name; then per fire, in order:
--                        its run hash, its side key, the job's active set, the job's idx:job,
--                        the job's index of fires not run (skipped, missed: capped apart), then
--                        the run hash and side key of each of the job's active runs as read
--                        just before (queue/replace)
-- ARGV[1] queue_count    q, the number of queue lists
-- ARGV[2] settings_count s, the number of settings that follow
-- ARGV[3] hold_ms        how long to hold such fires on finding the epoch mark missing (the
--                        mark is set then), or 0 never to hold them (a manual run)
-- ARGV[4..] batch        s settings, each: overlap policy; '1' for a scheduled fire (require
--                        scheduled_for > the job's last fire, advance it, honour pause) or '0'
--                        for a manual run; outcome ('queue', 'missed' or 'skipped'); reason
--                        for a non-queued outcome; its queue list (1 .. q); m; then m field,
--                        value pairs stored as they are (trigger, attempt, queue, ...);
--                        then groups of fires that share settings and instant, each: its
--                        settings (1 .. s), scheduled_for ms, c, then c fires, each: run id,
--                        job, and with overlap queue or replace (outcome 'queue') n and the n
--                        ids of the job's active runs as read just before
-- Returns one string: for each fire in turn, created (0/1) directly followed by its status,
-- separated by spaces (e.g. '1queued 0stale'); status 'stale' for an old fire, 'held<ms>' for
-- a fire held for <ms> more (e.g. '0held1400': nothing written, send it again). It stops at a
-- fire whose job's active set changed since it was read ('0retry'), so that the caller can
-- read it again and send that fire and those after it.

-- One fire: its run hash and side key, its job's active set, idx:job and index of fires not
-- run, run id, job, scheduled_for ms, its settings, and the n active runs of the job as read
-- before (s.reads): their ids are ARGV[ids + 1 .. ids + n], the run hash of the i-th is
-- KEYS[hashes + 2i - 1] and its side key KEYS[hashes + 2i].
-- How long (ms) fires that look at active runs are held from now; 0 when they are not. Read
-- once per call; finding the epoch mark missing sets it and starts the hold.
local hold_left = nil
local function held_for()
  if hold_left == nil then
    hold_left = 0
    local wait = tonumber(hold_ms) or 0
    if wait > 0 then
      if redis.call('EXISTS', epoch) == 0 then
        redis.call('SET', epoch, now)
        redis.call('SET', hold, now + wait, 'PX', wait)
        hold_left = wait
      else
        local until_ms = tonumber(redis.call('GET', hold) or '') or 0
        if until_ms > now then hold_left = until_ms - now end
      end
    end
  end
  return hold_left
end

-- Returns created (0/1), status.
local function enqueue(run, out, active, by_job, not_run, id, job, fire_ms, s, n, ids, hashes)
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
    -- A last fire that is not a number (a damaged record) is overwritten, not compared.
    local last = tonumber(redis.call('HGET', last_fire, job) or '')
    if last and last >= fire then return 0, 'stale' end
  end
  if s.outcome == 'queue' and s.looks and held_for() > 0 then
    return 0, 'held' .. held_for()
  end
  if s.scheduled then
    redis.call('HSET', last_fire, job, fire_ms)
  end
  local status = 'queued'
  local reason = s.reason
  local other = idx_skipped
  if s.outcome ~= 'queue' then
    status = s.outcome
    if status == 'missed' then other = idx_missed end
  elseif s.scheduled and redis.call('SISMEMBER', paused, job) == 1 then
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
      if redis.call('HGET', KEYS[hashes + 2 * i - 1], 'status') == 'queued' then
        status = 'skipped'
        reason = 'overlap=queue: run ' .. ARGV[ids + i] .. ' is already waiting'
        break
      end
    end
  elseif policy == 'replace' then
    for i = 1, n do
      local key, old = KEYS[hashes + 2 * i - 1], ARGV[ids + i]
      local st = redis.call('HGET', key, 'status')
      if st == 'running' then
        redis.call('HSET', key, 'kill_requested', 'replaced')
      elseif st == 'queued' then
        redis.call('LREM', s.queue, 0, old)
        redis.call('HSET', key, 'status', 'skipped', 'finished_at', now)
        put_reason(key, KEYS[hashes + 2 * i], 'replaced by ' .. id, false)
        redis.call('SREM', active, old)
        move(old, idx_queued, idx_skipped, redis.call('HGET', key, 'scheduled_for'))
        ended(ended_feed, old)
      end
    end
  end
  redis.call('HSET', run, 'id', id, 'job', job, 'scheduled_for', fire_ms, 'enqueued_at', now,
    'status', status, unpack(s.fields))
  if status == 'queued' then
    redis.call('RPUSH', s.queue, id)
    redis.call('SADD', active, id)
    redis.call('ZADD', idx_queued, fire, id)
  else
    redis.call('HSET', run, 'finished_at', now)
    put_reason(run, out, reason, true)
    redis.call('ZADD', other, fire, id)
    redis.call('ZADD', not_run, fire, id)
    ended(ended_feed, id)
  end
  redis.call('ZADD', idx_all, fire, id)
  redis.call('ZADD', by_job, fire, id)
  return 1, status
end

local a = batch
local settings = {}
for i = 1, tonumber(settings_count) do
  local m = tonumber(ARGV[a + 5])
  local s = {policy = ARGV[a], scheduled = ARGV[a + 1] == '1', outcome = ARGV[a + 2],
    reason = ARGV[a + 3], queue = KEYS[batch_keys - 1 + tonumber(ARGV[a + 4])],
    fields = {unpack(ARGV, a + 6, a + 5 + 2 * m)}}
  s.reads = (s.policy == 'queue' or s.policy == 'replace') and s.outcome == 'queue'
  s.looks = s.policy == 'skip' or s.policy == 'queue' or s.policy == 'replace'
  settings[i] = s
  a = a + 6 + 2 * m
end
local k = batch_keys + tonumber(queue_count)
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
    local created, status = enqueue(KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3],
      KEYS[k + 4], id, job, fire_ms, s, n, a - 1 - n, k + 4)
    out[#out + 1] = created .. status
    if status == 'retry' then break end
    left = left - 1
    k = k + 5 + 2 * n
  end
end
return table.concat(out, ' ')
