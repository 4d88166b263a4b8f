-- lib.lua: helpers of the RabbitMQ ledger's scripts, prepended to each after the Redis
-- broker's lib.lua (for now_ms and store_result). A record is the hash
-- <prefix>:amqp:job:<task id>:
--   q queue, s state (w waiting, r running, d dead, a aborted before it ran, f finished,
--   u unconfirmed: its publish failed, see unregister.lua),
--   a started attempts, c copy (the number of the message copy that carries the task:
--   a copy with a lower number is stale), t lease token, r crashes in a row, x abort mark,
--   k idempotency key, kt key ttl ms, p priority, b body (while waiting, for abort),
--   due (ms), dr/dt dead-letter reason and time.

local function job_key(prefix, task_id) return prefix .. ':amqp:job:' .. task_id end
local function idem_key(prefix, key) return prefix .. ':amqp:key:' .. key end
local function running_set(prefix, queue) return prefix .. ':amqp:running:' .. queue end
local function delayed_set(prefix, queue) return prefix .. ':amqp:delayed:' .. queue end

-- Keep the idempotency key (if the task holds one) as long as the record.
local function hold_key(prefix, job, task_id, ttl)
  local k = redis.call('HGET', job, 'k')
  if k and k ~= '' then
    redis.call('SET', idem_key(prefix, k), task_id, 'PX', ttl)
  end
end

-- The task ended: its key answers for it key-ttl more ms, then admits a new task.
local function end_key(prefix, job, task_id)
  local f = redis.call('HMGET', job, 'k', 'kt')
  if f[1] and f[1] ~= '' then
    local key = idem_key(prefix, f[1])
    if redis.call('GET', key) == task_id then
      local ttl = tonumber(f[2]) or 0
      if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('DEL', key) end
    end
  end
end
