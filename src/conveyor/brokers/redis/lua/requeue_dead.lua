-- requeue_dead.lua: move dead letters back to their queue with attempts reset (and no
-- abort mark), and drop their stored (dead) result so waiters wait for the new run.
-- KEYS: tag.  ARGV: group, prefix ('' on a cluster, where the results live in other
--   slots: the caller deleted them before this call), then task ids.
-- Returns how many were requeued.
local tag, group, prefix = KEYS[1], ARGV[1], ARGV[2]
local moved = 0
for i = 3, #ARGV do
  local task_id = ARGV[i]
  local job = tag .. ':job:' .. task_id
  local f = redis.call('HMGET', job, 's', 'd', 'p')
  if f[1] == 'dead' and f[2] then
    local entries = redis.call('XRANGE', tag .. ':dlq', f[2], f[2])
    if #entries == 1 then
      local _, body = entry_message(entries[1])
      redis.call('XDEL', tag .. ':dlq', f[2])
      local e = enqueue(tag, group, task_id, body, f[3] or '0')
      redis.call('HSET', job, 'a', 0, 's', 'queued', 'e', e)
      redis.call('HDEL', job, 'd', 'r', 'x')
      if prefix ~= '' then redis.call('DEL', prefix .. ':result:' .. task_id) end
      moved = moved + 1
    end
  end
end
return moved
