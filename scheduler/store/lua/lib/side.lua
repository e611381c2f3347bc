-- A run's record keeps short values only, so that Redis keeps it compact (a listpack: every
-- value at most 64 bytes, hash-max-listpack-value's default). Long texts live in its side
-- key (out:<id>, under the same hash tag): output, error, result, a late report and the live
-- output of a running run when longer than that, and the whole reason when the record's copy
-- had to be cut. A read takes a field from the side key, else from the record.
local short_max = 64
local beside = {output = true, error = true, result = true, late_report = true,
  live_output = true, live_total = true}
-- The text cut to short_max bytes at a character boundary, ending with an ellipsis when cut.
local function shortened(text)
  if #text <= short_max then return text end
  local cut = short_max - 3
  local b = string.byte(text, cut + 1)
  while cut > 0 and b >= 128 and b < 192 do  -- a UTF-8 continuation byte: back up
    cut = cut - 1
    b = string.byte(text, cut + 1)
  end
  return string.sub(text, 1, cut) .. '\226\128\166'
end
-- Records a run's reason: cut in its record, whole in its side key when it was cut. `fresh`
-- when the run has no side key yet (nothing to remove).
local function put_reason(run, out, text, fresh)
  local short = shortened(text)
  redis.call('HSET', run, 'reason', short)
  if short ~= text then
    redis.call('HSET', out, 'reason', text)
  elseif not fresh then
    redis.call('HDEL', out, 'reason')
  end
end
-- Writes field, value pairs (list[first], list[first + 1], ...): a long text to the side key
-- (a short one to the record, and the other place's copy removed, so a read finds one), the
-- reason as put_reason does, the rest to the record.
local function put_fields(run, out, list, first)
  local record, side, gone_here, gone_there = {}, {}, {}, {}
  for i = first, #list, 2 do
    local name, value = list[i], list[i + 1]
    if name == 'reason' then
      put_reason(run, out, value, false)
    elseif beside[name] and #value > short_max then
      side[#side + 1] = name
      side[#side + 1] = value
      gone_here[#gone_here + 1] = name
    else
      record[#record + 1] = name
      record[#record + 1] = value
      if beside[name] then gone_there[#gone_there + 1] = name end
    end
  end
  if #record > 0 then redis.call('HSET', run, unpack(record)) end
  if #side > 0 then redis.call('HSET', out, unpack(side)) end
  if #gone_here > 0 then redis.call('HDEL', run, unpack(gone_here)) end
  if #gone_there > 0 then redis.call('HDEL', out, unpack(gone_there)) end
end
