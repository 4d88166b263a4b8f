-- publish.lua: enqueue a batch for one queue, with idempotency.
-- KEYS: tag of the queue.  ARGV: group, key prefix, then per message 7 values:
--   task id, body, priority, not-before (unix ms, 0 = now), idempotency key ('' = none),
--   key ttl ms (how long the key keeps pointing at the task after it ends), reused id
--   ('1' when the caller chose the task id, else '0').
-- A delayed message that becomes the queue's earliest is announced (announce_due). A
-- message written anew under a reused id deletes the result and progress stored under it.
-- Returns, per message, the task id that stands for it: the existing one when the key or
-- the task id is already known (nothing is written then), else its own. A dead-lettered
-- task's id may be reused: its dead letter is replaced by the new run, unless the
-- message's key is still live (then nothing is written, the dead letter stays).
local tag, group, prefix = KEYS[1], ARGV[1], ARGV[2]
local now = now_ms()
local out = {}
for i = 3, #ARGV, 7 do
  local id, body, prio, due = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local key, key_ttl, reused = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local job = tag .. ':job:' .. id
  local existing = false
  if key ~= '' then existing = redis.call('GET', tag .. ':key:' .. key) end
  if not existing then
    local dead = redis.call('HMGET', job, 's', 'd')
    if dead[1] == 'dead' then
      -- the caller reuses a dead-lettered task's id on purpose: a new run replaces it
      if dead[2] then redis.call('XDEL', tag .. ':dlq', dead[2]) end
      redis.call('DEL', job)
    end
  end
  if existing then
    out[#out + 1] = existing
  elseif redis.call('EXISTS', job) == 1 then
    out[#out + 1] = id
  else
    if reused == '1' then
      -- its old result and progress must not answer the new run's waiters
      redis.call('DEL', prefix .. ':result:' .. id, prefix .. ':progress:' .. id)
    end
    if key ~= '' then redis.call('SET', tag .. ':key:' .. key, id) end
    if due > now then
      redis.call('HSET', job, 's', 'queued', 'a', 0, 'p', prio, 'k', key, 'kt', key_ttl, 'b', body)
      redis.call('ZADD', tag .. ':delayed', due, id)
      announce_due(tag, prefix, id, due)
    else
      local e = enqueue(tag, group, id, body, prio)
      redis.call('HSET', job, 's', 'queued', 'a', 0, 'p', prio, 'k', key, 'kt', key_ttl, 'e', e)
    end
    out[#out + 1] = id
  end
end
return out
