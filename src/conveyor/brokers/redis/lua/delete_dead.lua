-- delete_dead.lua: delete dead letters for good (their DLQ entry and job record).
-- KEYS: tag.  ARGV: task ids.  Returns how many were deleted.
local tag = KEYS[1]
local deleted = 0
for i = 1, #ARGV do
  local job = tag .. ':job:' .. ARGV[i]
  local f = redis.call('HMGET', job, 's', 'd')
  if f[1] == 'dead' then
    if f[2] then redis.call('XDEL', tag .. ':dlq', f[2]) end
    redis.call('DEL', job)
    deleted = deleted + 1
  end
end
return deleted
