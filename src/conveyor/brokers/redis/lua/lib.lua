-- lib.lua: helpers prepended to every script below (Redis has no script imports).
-- A "tag" is the hash-tagged key prefix of one queue, e.g. "{conveyor:default}".

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Wake the queue's idle cluster workers (cluster.py): they set <tag>:idle while they wait,
-- and listen on the sharded channel <tag>:wake, in the queue's own slot. Once per script
-- call; nothing when no one waits (and on one server, where no one sets the mark).
local woken = {}
local function wake(tag)
  if woken[tag] then return end
  woken[tag] = true
  if redis.call('EXISTS', tag .. ':idle') == 1 then
    redis.call('SPUBLISH', tag .. ':wake', '1')
  end
end

-- Create the consumer group at 0 (never $, which would skip the backlog); BUSYGROUP is fine.
local function ensure_group(stream, group)
  pcall(redis.call, 'XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end

-- Append a message to the stream of its priority, registering the priority on first use.
local listed_streams = {}  -- this call's streams already in their queue's :prios

local function enqueue(tag, group, task_id, body, prio)
  local stream = tag .. ':s:' .. prio
  if not listed_streams[stream] then
    if redis.call('ZADD', tag .. ':prios', 'NX', prio, prio) == 1 then
      ensure_group(stream, group)
    end
    listed_streams[stream] = true
  end
  wake(tag)
  return redis.call('XADD', stream, '*', 'i', task_id, 'b', body)
end

-- Put recovered work (expired leases, graceful releases) in the queue's "front" stream,
-- which fetch reads before every priority: a stream cannot take an entry at its head, and
-- a dead worker's tasks must restart within lease + reap interval even behind a backlog.
local function enqueue_front(tag, group, task_id, body)
  local stream = tag .. ':s:front'
  if redis.call('ZADD', tag .. ':prios', 'NX', '+inf', 'front') == 1 then
    ensure_group(stream, group)
  end
  wake(tag)
  return redis.call('XADD', stream, '*', 'i', task_id, 'b', body)
end

-- True if stream entry `id` is still leased by `consumer` (the fencing check: an entry that
-- was reaped and re-added, or acked, or claimed by another consumer, is no longer ours).
local function owned(stream, group, consumer, id)
  local ok, p = pcall(redis.call, 'XPENDING', stream, group, id, id, 1, consumer)
  return ok and #p == 1
end

-- The task ended: let its idempotency key expire key-ttl after now, and take it out of its
-- workflow's set of held tasks.
local function release_key(tag, job, prefix)
  local k = redis.call('HMGET', job, 'k', 'kt', 'w')
  if k[1] and k[1] ~= '' then
    local ttl = tonumber(k[2]) or 0
    if ttl > 0 then
      redis.call('PEXPIRE', tag .. ':key:' .. k[1], ttl)
    else
      redis.call('DEL', tag .. ':key:' .. k[1])
    end
  end
  if k[3] and k[3] ~= '' then
    redis.call('SREM', prefix .. ':wf:' .. k[3] .. ':tasks', string.sub(job, #tag + 6))
  end
end

-- Store a result (data '' = none) and wake a producer waiting for it, if one is.
local function store_result(prefix, task_id, data, ttl_ms)
  if data == '' then return end
  local key = prefix .. ':result:' .. task_id
  local ttl = tonumber(ttl_ms)
  if ttl > 0 then
    redis.call('SET', key, data, 'PX', ttl)
  else
    redis.call('SET', key, data)
  end
  redis.call('DEL', prefix .. ':progress:' .. task_id)
  if redis.call('EXISTS', prefix .. ':waiting:' .. task_id) == 1 then
    redis.call('PUBLISH', prefix .. ':results', #task_id .. ':' .. task_id .. data)
  end
end

-- Read an entry's fields into (task id, body); a raw entry that was not written by Conveyor
-- keeps its entry id as task id and its fields, msgpack-encoded, as body (to dead-letter).
local function entry_message(entry)
  local fields = entry[2]
  local task_id, body = nil, nil
  if fields then
    for j = 1, #fields, 2 do
      if fields[j] == 'i' then task_id = fields[j + 1] elseif fields[j] == 'b' then body = fields[j + 1] end
    end
  end
  if task_id == nil or body == nil then
    return entry[1], cmsgpack.pack(fields or {})
  end
  return task_id, body
end

-- Start an attempt: count it, mark the job running. Returns the attempt number, how
-- many attempts in a row ended with their worker dead (the 'r' counter of reap.lua), and
-- the abort mark (1: abort.lua marked it while an earlier attempt ran, or its workflow
-- was aborted; do not run it).
-- A job without a record (an entry added by hand) gets one here: readers take a missing
-- 'a', 'p', 'k' or 'kt' as 0 or empty. An entry's stream is its job's priority, so 'p' is
-- written with the state (not for the front stream, which holds every priority).
-- A workflow's task started after abort_workflow.lua ended its workflow gets the mark
-- here: the abort's own abort.lua calls, one per task, come after that script, and a
-- worker must not start the task in between (its workflow's queued tasks never run).
-- `prefix` reads the workflow's record ('' on a cluster, which holds no workflows).
local function start(tag, task_id, prio, entry_id, prefix)
  local job = tag .. ':job:' .. task_id
  local f = redis.call('HMGET', job, 'a', 'r', 'x', 'w')
  local attempt = (tonumber(f[1]) or 0) + 1
  if prio == 'front' then
    redis.call('HSET', job, 's', 'running', 'e', entry_id, 'a', attempt)
  else
    redis.call('HSET', job, 's', 'running', 'e', entry_id, 'p', prio, 'a', attempt)
  end
  local aborted = tonumber(f[3] or '0')
  if aborted == 0 and prefix ~= '' then
    local workflow = f[4]
    if workflow and workflow ~= '' and redis.call('HGET', prefix .. ':wf:' .. workflow, 's') == 'aborted' then
      redis.call('HSET', job, 'x', 1)
      aborted = 1
    end
  end
  return attempt, tonumber(f[2] or '0'), aborted
end

-- After `task_id` joined the delayed set with score `due`: if it is now the earliest,
-- announce "<due ms> <tag>" on <prefix>:delays. A worker whose blocking read would wait
-- past that time wakes for it; later ones change nothing and are not announced.
local function announce_due(tag, prefix, task_id, due)
  local first = redis.call('ZRANGE', tag .. ':delayed', 0, 0)
  if first[1] == task_id then
    redis.call('PUBLISH', prefix .. ':delays', due .. ' ' .. tag)
    wake(tag)
  end
end

-- Publish one message to the queue of `tag`, with idempotency; the task id that stands for
-- it (see publish.lua). `workflow` ('' = none): the workflow whose set of held tasks it
-- joins.
local function publish_to(tag, group, prefix, now, id, body, prio, due, key, key_ttl, reused, workflow)
  local job = tag .. ':job:' .. id
  if key ~= '' then
    local existing = redis.call('GET', tag .. ':key:' .. key)
    if existing then return existing end
  end
  local found = redis.call('HMGET', job, 's', 'd')
  if found[1] == 'dead' then
    -- the caller reuses a dead-lettered task's id on purpose: a new run replaces it
    if found[2] then redis.call('XDEL', tag .. ':dlq', found[2]) end
    redis.call('DEL', job)
  elseif found[1] then
    return id  -- queued, running or finished under this id: nothing is written
  end
  if reused == '1' then
    -- its old result and progress must not answer the new run's waiters
    redis.call('DEL', prefix .. ':result:' .. id, prefix .. ':progress:' .. id)
  end
  -- a record's absent fields read as their defaults: attempts 0, no key
  local where, at = 'e', nil
  if due > now then
    where, at = 'b', body
    redis.call('ZADD', tag .. ':delayed', due, id)
    announce_due(tag, prefix, id, due)
  else
    at = enqueue(tag, group, id, body, prio)
  end
  if key ~= '' then
    redis.call('SET', tag .. ':key:' .. key, id)
    redis.call('HSET', job, 's', 'queued', 'p', prio, 'k', key, 'kt', key_ttl, where, at)
  else
    redis.call('HSET', job, 's', 'queued', 'p', prio, where, at)
  end
  if workflow ~= '' then
    redis.call('HSET', job, 'w', workflow)
    redis.call('SADD', prefix .. ':wf:' .. workflow .. ':tasks', id)
  end
  return id
end

-- The publish of a workflow's scripts (workflows.lua): a message {task id, queue, body,
-- priority, due ms, key, key ttl ms, reused, workflow} to its queue's stream.
local function stream_publisher(prefix, group, now)
  return function(m)
    redis.call('SADD', prefix .. ':queues', m[2])
    local tag = '{' .. prefix .. ':' .. m[2] .. '}'
    return publish_to(tag, group, prefix, now, m[1], m[3], m[4], tonumber(m[5]), m[6], m[7],
      m[8], m[9])
  end
end

-- Move due delayed messages (retries and delayed enqueues) to their streams.
local function promote_due(tag, group, now, limit)
  local due = redis.call('ZRANGEBYSCORE', tag .. ':delayed', '-inf', now, 'LIMIT', 0, limit)
  for _, task_id in ipairs(due) do
    local job = tag .. ':job:' .. task_id
    local f = redis.call('HMGET', job, 'b', 'p')
    redis.call('ZREM', tag .. ':delayed', task_id)
    if f[1] then
      local e = enqueue(tag, group, task_id, f[1], f[2] or '0')
      redis.call('HSET', job, 'e', e, 's', 'queued')
      redis.call('HDEL', job, 'b')
    end
  end
  return #due
end
