-- reap.lua: make expired leases and due delayed messages ready again, for one queue.
-- Follows the XAUTOCLAIM cursor over each priority stream with min-idle = lease as the
-- only guard (a second reaper finds nothing: claiming resets idle). Each expired entry is
-- acknowledged, deleted and re-added to the front stream, so fetch.lua only ever reads '>'
-- and recovered work runs before the backlog.
-- Its attempt count is kept (a crashed attempt counts, which is how poison is caught).
-- KEYS: tag.  ARGV: group, reaper consumer name, lease ms, max entries to move.
-- Returns {moved, promoted, lost ids...}: lost ids were pending but their entry had been
-- deleted by someone else (e.g. an operator's XTRIM); they are reported, never crash us.
local tag, group, reaper, lease, limit = KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local promoted = promote_due(tag, group, now_ms(), limit)
local moved = 0
local lost = {}
for _, prio in ipairs(redis.call('ZREVRANGE', tag .. ':prios', 0, -1)) do
  local stream = tag .. ':s:' .. prio
  local cursor = '0-0'
  repeat
    local ok, res = pcall(redis.call, 'XAUTOCLAIM', stream, group, reaper, lease, cursor, 'COUNT', 100)
    if not ok then ensure_group(stream, group) break end
    cursor = res[1]
    for _, entry in ipairs(res[2]) do
      if entry[2] then
        local task_id, body = entry_message(entry)
        redis.call('XACK', stream, group, entry[1])
        redis.call('XDEL', stream, entry[1])
        local job = tag .. ':job:' .. task_id
        local e = enqueue_front(tag, group, task_id, body)
        if redis.call('EXISTS', job) == 1 then redis.call('HSET', job, 'e', e, 's', 'queued'); redis.call('HINCRBY', job, 'r', 1) end
        moved = moved + 1
      else
        redis.call('XACK', stream, group, entry[1])  -- Redis 6.2: a nil entry stays pending
        lost[#lost + 1] = entry[1]
      end
    end
    for _, id in ipairs(res[3] or {}) do lost[#lost + 1] = id end
  until cursor == '0-0' or moved >= limit
end
local out = {moved, promoted}
for _, id in ipairs(lost) do out[#out + 1] = id end
return out
