-- bury.lua (reap): mark dead the tasks RabbitMQ dead-lettered itself (over its delivery
-- limit), whose records still say waiting or running: their dead letter is in the DLQ.
-- KEYS: none.  ARGV: prefix, then per task 2 values: task id, reason.
-- Returns how many records were marked; a task that moved on since (or has no record)
-- is left alone.
local prefix = ARGV[1]
local now = now_ms()
local marked = 0
for i = 2, #ARGV, 2 do
  local task_id = ARGV[i]
  local job = job_key(prefix, task_id)
  local f = redis.call('HMGET', job, 's', 'q')
  if f[1] == 'w' or f[1] == 'r' then
    redis.call('SREM', running_set(prefix, f[2]), task_id)
    redis.call('ZREM', delayed_set(prefix, f[2]), task_id)
    end_key(prefix, job, task_id)
    redis.call('HSET', job, 's', 'd', 'dr', ARGV[i + 1], 'dt', now)
    redis.call('HDEL', job, 'b', 'x')
    redis.call('PERSIST', job)
    marked = marked + 1
  end
end
return marked
