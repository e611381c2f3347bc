-- Checks a stored run before a script changes it: Lua does not roll back, so a script must
-- not start writing and then trip over a field. The tables are generated from the Python
-- declaration (store/codec.py FIELD_KINDS) and the model's statuses and triggers.
local kinds = {$kinds}
local statuses = {$statuses}
local triggers = {$triggers}
local function finite(n)
  return n ~= nil and n == n and n ~= math.huge and n ~= -math.huge
end
local function readable(kind, v)
  if kind == 'int' then
    return string.match(v, '^-?%d+$') ~= nil and #v <= 18
  elseif kind == 'time' then
    local n = string.match(v, '^-?%d+$') and tonumber(v)
    return n ~= nil and n > -62135596800000 and n < 253402300800000
  elseif kind == 'float' then
    return finite(tonumber(v)) and not string.find(v, '[xXnN]')
  elseif kind == 'json' then
    return (pcall(cjson.decode, v))
  elseif kind == 'status' then
    return statuses[v] ~= nil
  elseif kind == 'trigger' then
    return triggers[v] ~= nil
  end
  return true
end
-- Why a run's fields (name -> value) cannot be used as run `id` (naming the first bad field
-- in name order), or nil.
local function unusable_fields(fields, id)
  if fields['id'] ~= id then return "field id is not the run's id" end
  local job = fields['job'] or ''
  if job == '' or string.sub(id, 1, #job + 1) ~= job .. '@' then
    return "field job is not the job of the run's id"
  end
  if (fields['scheduled_for'] or '') == '' then return 'field scheduled_for is missing' end
  local names = {}
  for name in pairs(fields) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local kind, v = kinds[name], fields[name]
    if kind and v ~= '' and not readable(kind, v) then
      return 'field ' .. name .. " is '" .. string.sub(v, 1, 80) .. "', which cannot be read"
    end
  end
  return nil
end
-- Why the run hash at `key` cannot be used as run `id`, or nil.
local function unusable(key, id)
  local f = redis.call('HGETALL', key)
  local fields = {}
  for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
  return unusable_fields(fields, id)
end
-- Sets a run that cannot be used aside: failed now, the reason naming the bad field.
local function set_aside(key, out, id, reason, from_index, failed_index, active, feed)
  redis.call('HSET', key, 'status', 'failed', 'finished_at', now)
  put_reason(key, out, 'unusable record: ' .. reason, false)
  local score = score_of(redis.call('HGET', key, 'scheduled_for'))
  redis.call('ZREM', from_index, id)
  redis.call('ZADD', failed_index, score, id)
  redis.call('SREM', active, id)
  ended(feed, id)
end
