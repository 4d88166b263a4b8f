-- forget.lua (delete_dead): forget the records of dead letters that were deleted.
-- KEYS: none.  ARGV: prefix, then task ids.
-- Returns how many dead records were removed (a task revived meanwhile is kept).
local prefix = ARGV[1]
local removed = 0
for i = 2, #ARGV do
  local job = job_key(prefix, ARGV[i])
  if redis.call('HGET', job, 's') == 'd' then
    redis.call('DEL', job)
    removed = removed + 1
  end
end
return removed
