-- lib.lua: helpers of the RabbitMQ ledger's scripts, prepended to each after the Redis
-- broker's lib.lua (for now_ms and store_result) and workflows.lua (workflows, whose
-- messages this broker publishes through its outbox). A record is the hash
-- <prefix>:amqp:job:<task id>:
--   q queue, s state (w waiting, r running, d dead, a aborted before it ran, f finished,
--   u unconfirmed: its publish failed, see unregister.lua),
--   a started attempts, c copy (the number of the message copy that carries the task:
--   a copy with a lower number is stale), t lease token, r crashes in a row, x abort mark,
--   k idempotency key, kt key ttl ms, p priority, b body (while waiting, for abort),
--   due (ms), dr/dt dead-letter reason and time, w the workflow it belongs to.
-- <prefix>:amqp:outbox is a zset of "<copy>:<task id>" by the time (ms) a settlement
-- registered that copy of a workflow's message: it leaves when RabbitMQ confirmed the
-- publish (confirm, in records.py), and republish.lua sends what stays too long again.

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

-- The task ended (or was removed): it leaves its workflow's set of held tasks.
local function workflow_done(prefix, job, task_id)
  local w = redis.call('HGET', job, 'w')
  if w and w ~= '' then redis.call('SREM', prefix .. ':wf:' .. w .. ':tasks', task_id) end
end

-- Admit one message before it is published (register.lua): returns the task id that
-- stands for it and the copy to publish (0: publish nothing). See register.lua.
local function register_one(prefix, record_ttl, results, now, task_id, queue, body, prio, due,
    key, key_ttl, reused, workflow)
  local job = job_key(prefix, task_id)
  local owner = false
  if key ~= '' then owner = redis.call('GET', idem_key(prefix, key)) end
  local state = redis.call('HGET', job, 's')
  if owner then return owner, 0 end
  if state == 'w' or state == 'r' then return task_id, 0 end
  if redis.call('HGET', job, 'uc') == '1' then
    -- a publish reported as failed had landed and its copy has run since: this is the
    -- producer's retry of that publish, not a new run (absorbed once)
    redis.call('HDEL', job, 'uc')
    return task_id, 0
  end
  local copy = (tonumber(redis.call('HGET', job, 'c')) or 0) + 1
  redis.call('DEL', job)
  redis.call('HSET', job, 'q', queue, 's', 'w', 'a', 0, 'c', copy, 't', 0, 'r', 0,
    'p', prio, 'k', key, 'kt', key_ttl, 'b', body, 'due', due)
  local ttl = math.max(due - now, 0) + record_ttl
  redis.call('PEXPIRE', job, ttl)
  hold_key(prefix, job, task_id, ttl)
  if due > now then redis.call('ZADD', delayed_set(prefix, queue), due, task_id) end
  redis.call('SADD', prefix .. ':amqp:queues', queue)
  if reused == '1' then
    redis.call('DEL', results .. ':result:' .. task_id, results .. ':progress:' .. task_id)
  end
  if workflow ~= '' then
    redis.call('HSET', job, 'w', workflow)
    redis.call('SADD', prefix .. ':wf:' .. workflow .. ':tasks', task_id)
  end
  return task_id, copy
end

-- The publish of a workflow's scripts (workflows.lua): the message {task id, queue, body,
-- priority, due ms, key, key ttl ms, reused, workflow} is registered and put in the
-- outbox, and {task id, copy, queue, body, priority, due} appended to `out`, for the
-- caller to publish to RabbitMQ once the script has run.
local function outbox_publisher(prefix, record_ttl, results, now, out)
  return function(m)
    local id, copy = register_one(prefix, record_ttl, results, now, m[1], m[2], m[3], m[4],
      tonumber(m[5]), m[6], m[7], m[8], m[9])
    if copy > 0 then
      redis.call('ZADD', prefix .. ':amqp:outbox', now, copy .. ':' .. m[1])
      for _, v in ipairs({m[1], copy, m[2], m[3], m[4], m[5]}) do out[#out + 1] = v end
    end
    return id
  end
end
