-- unregister.lua: undo register.lua for messages whose publish failed or was not
-- confirmed, so the producer may try again with the same key or task id.
-- KEYS: none.  ARGV: prefix, record ttl ms, then per message 2 values: task id, copy (as
--   registered).
-- The record is kept as 'u' (unconfirmed) with its copy number: a retried publish then
-- gets the next copy, and the unconfirmed one, if RabbitMQ took it after all (a confirm
-- lost with its connection, a publish blocked past its timeout), is dropped as stale
-- when it surfaces; if nobody retries, it runs. Its idempotency key is freed.
-- Returns how many records were undone; one that moved on meanwhile (its copy was claimed:
-- the publish landed after all) is left alone and marked 'uc'.
local prefix, record_ttl = ARGV[1], tonumber(ARGV[2])
local undone = 0
for i = 3, #ARGV, 2 do
  local task_id = ARGV[i]
  local job = job_key(prefix, task_id)
  local f = redis.call('HMGET', job, 's', 'c', 'q', 'k')
  if f[1] == 'w' and f[2] == ARGV[i + 1] then
    if f[4] and f[4] ~= '' and redis.call('GET', idem_key(prefix, f[4])) == task_id then
      redis.call('DEL', idem_key(prefix, f[4]))
    end
    redis.call('ZREM', delayed_set(prefix, f[3]), task_id)
    redis.call('HSET', job, 's', 'u', 'k', '')
    redis.call('PEXPIRE', job, record_ttl)
    undone = undone + 1
  elseif f[1] and f[1] ~= 'u' and f[2] == ARGV[i + 1] then
    -- this very copy was claimed already: it landed, and runs or ran. The producer's
    -- retry of the publish is the same enqueue (absorbed by register_one), not a new run
    redis.call('HSET', job, 'uc', 1)
  end
end
return undone
