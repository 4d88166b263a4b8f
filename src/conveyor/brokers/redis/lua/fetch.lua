-- fetch.lua: claim up to COUNT new messages of one queue, highest priority first, and
-- start them (attempts + 1). Due delayed messages are promoted first.
-- KEYS: tag.  ARGV: group, consumer, count, prefix ('' on a cluster: see start in lib.lua).
-- Returns a flat list: stream, entry id, task id, body, attempt, crashes, abort mark (7 per
-- message).
-- Expired leases are not claimed here: reap.lua re-adds them as new entries, so this
-- script only ever reads '>' and the hot path never scans the pending list.
local tag, group, consumer, count = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local prefix = ARGV[4] or ''
promote_due(tag, group, now_ms(), 1000)
local out = {}
local prios = redis.call('ZREVRANGE', tag .. ':prios', 0, -1)
for _, prio in ipairs(prios) do
  if count <= 0 then break end
  local stream = tag .. ':s:' .. prio
  local ok, res = pcall(redis.call, 'XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', stream, '>')
  if not ok then
    ensure_group(stream, group)  -- NOGROUP after data loss: recreate at 0 and move on
  elseif res then
    for _, entry in ipairs(res[1][2]) do
      local task_id, body = entry_message(entry)
      out[#out + 1] = stream
      out[#out + 1] = entry[1]
      out[#out + 1] = task_id
      out[#out + 1] = body
      local attempt, crashes, aborted = start(tag, task_id, prio, entry[1], prefix)
      out[#out + 1] = attempt
      out[#out + 1] = crashes
      out[#out + 1] = aborted
      count = count - 1
    end
  end
end
return out
