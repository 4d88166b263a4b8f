-- unregister.lua: undo register.lua for messages whose publish failed (nothing reached
-- RabbitMQ), so the producer may try again with the same key or task id.
-- KEYS: none.  ARGV: prefix, then per message 2 values: task id, copy (as registered).
-- Returns how many records were removed; one that moved on meanwhile is left alone.
local prefix = ARGV[1]
local removed = 0
for i = 2, #ARGV, 2 do
  local task_id = ARGV[i]
  local job = job_key(prefix, task_id)
  local f = redis.call('HMGET', job, 's', 'c', 'q', 'k')
  if f[1] == 'w' and f[2] == ARGV[i + 1] then
    if f[4] and f[4] ~= '' and redis.call('GET', idem_key(prefix, f[4])) == task_id then
      redis.call('DEL', idem_key(prefix, f[4]))
    end
    redis.call('ZREM', delayed_set(prefix, f[3]), task_id)
    redis.call('DEL', job)
    removed = removed + 1
  end
end
return removed
