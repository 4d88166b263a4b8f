-- workflows.lua: helpers for workflows (Capability.WORKFLOWS), prepended with lib.lua to
-- every script; the RabbitMQ broker's records use them too, with a publish of their own.
--
-- Keys, under the bare prefix (keys.py):
--   <p>:wf:<workflow id>          hash  s=state, c=created at, f=finished at (Unix s),
--                                       t=ttl (s), i=info, x=the task whose failure ended it
--   <p>:wf:<workflow id>:tasks    set   its tasks the broker holds: added when published,
--                                       removed when they end (release_key)
--   <p>:workflows:<state>         zset  workflow ids by when their record expires (ms)
--   <p>:bar:<barrier id>          hash  w=workflow, n=size (absent until sealed), j=joined,
--                                       f=failed, ff=first failed index, x=1 once fired,
--                                       pt=1 when partial, t=ttl ms, and the callback:
--                                       ci=task id, cq=queue, cb=body, cp=priority, ck=key,
--                                       ckt=key ttl ms
--   <p>:bar:<barrier id>:r        hash  member index -> its encoded Result
-- A barrier and its outcomes expire t after their last change.
--
-- A follow travels in ARGV as a count n (0: none) and n values:
--   workflow, finish ('' = it goes on), failed task, then the numbers of opens, publishes,
--   joins (0 or 1) and results, then
--   each open:    barrier id, workflow, size (-1 = not known), partial (0/1), ttl ms,
--                 and its callback as a message
--   each message: task id, queue, body, priority, due ms, key ('' = none), key ttl ms,
--                 reused (0/1), workflow
--   the join:     barrier id, index, data, failed (0/1)
--   each result:  task id, data, ttl ms (-1 = no expiry)
-- A script applies it with apply_follow(prefix, follow, now, publish, store): publish(m)
-- publishes a message, store(task id, data, ttl ms) stores a result.

-- Read the follow at ARGV[i]; returns it (nil when none) and the index after it.
local function read_follow(args, i)
  if args[i] == '0' then return nil, i + 1 end  -- the hot path: no workflow
  local n = tonumber(args[i])
  local f = {workflow = args[i + 1], finish = args[i + 2], failed_task = args[i + 3],
    opens = {}, publish = {}, join = nil, results = {}}
  local opens, published = tonumber(args[i + 4]), tonumber(args[i + 5])
  local joins, results = tonumber(args[i + 6]), tonumber(args[i + 7])
  local j = i + 8
  for _ = 1, opens do
    f.opens[#f.opens + 1] = {args[j], args[j + 1], args[j + 2], args[j + 3], args[j + 4],
      {unpack(args, j + 5, j + 13)}}
    j = j + 14
  end
  for _ = 1, published do
    f.publish[#f.publish + 1] = {unpack(args, j, j + 8)}
    j = j + 9
  end
  if joins == 1 then
    f.join = {args[j], args[j + 1], args[j + 2], args[j + 3]}
    j = j + 4
  end
  for _ = 1, results do
    f.results[#f.results + 1] = {args[j], args[j + 1], args[j + 2]}
    j = j + 3
  end
  return f, i + 1 + n
end

local function workflow_state(prefix, workflow)
  if workflow == '' then return false end
  return redis.call('HGET', prefix .. ':wf:' .. workflow, 's')
end

-- End a running workflow in `state` (its record kept ttl from now); false if it was not
-- running (ended before, aborted, or unknown).
local function end_workflow(prefix, workflow, state, failed_task, now)
  local key = prefix .. ':wf:' .. workflow
  local f = redis.call('HMGET', key, 's', 't')
  if f[1] ~= 'running' then return false end
  local ttl_ms = math.floor(tonumber(f[2]) * 1000)
  redis.call('HSET', key, 's', state, 'f', tostring(now / 1000), 'x', failed_task)
  redis.call('PEXPIRE', key, ttl_ms)
  redis.call('ZREM', prefix .. ':workflows:running', workflow)
  redis.call('ZADD', prefix .. ':workflows:' .. state, now + ttl_ms, workflow)
  return true
end

-- Save a workflow's record; over an existing one, only its info and ttl (its state stays).
local function save_workflow(prefix, id, state, created, finished, ttl, info, failed_task)
  local key = prefix .. ':wf:' .. id
  local current = redis.call('HMGET', key, 's', 'c', 'f')
  if current[1] then
    state, created, finished = current[1], current[2], current[3]
    redis.call('HSET', key, 't', ttl, 'i', info)
  else
    redis.call('HSET', key, 's', state, 'c', created, 'f', finished, 't', ttl, 'i', info,
      'x', failed_task)
  end
  local since = tonumber(created)
  if state ~= 'running' then since = tonumber(finished) end
  local expires = math.floor((since + tonumber(ttl)) * 1000)
  redis.call('PEXPIREAT', key, expires)
  redis.call('ZADD', prefix .. ':workflows:' .. state, expires, id)
end

-- Publish a barrier's callback, once: when every member joined, or (not partial) as soon
-- as one joined failed; not when its workflow was aborted.
local function fire(prefix, barrier_id, publish)
  local key = prefix .. ':bar:' .. barrier_id
  local b = redis.call('HMGET', key, 'x', 'n', 'j', 'f', 'pt', 'w', 'ci', 'cq', 'cb', 'cp',
    'ck', 'ckt')
  if b[1] ~= '0' then return end  -- gone, or fired before
  local size, joined, failed = tonumber(b[2] or '-1'), tonumber(b[3]), tonumber(b[4])
  if not ((size >= 0 and joined >= size) or (failed > 0 and b[5] ~= '1')) then return end
  redis.call('HSET', key, 'x', '1')
  if workflow_state(prefix, b[6]) == 'aborted' then return end
  publish({b[7], b[8], b[9], b[10], '0', b[11] or '', b[12], '0', b[6]})
end

-- Open a barrier unless it exists (a continuation started twice keeps the first).
local function open_barrier(prefix, o, publish)
  local key = prefix .. ':bar:' .. o[1]
  if redis.call('EXISTS', key) == 1 then return end
  local cb = o[6]
  redis.call('HSET', key, 'w', o[2], 'j', 0, 'f', 0, 'x', '0', 'pt', o[4], 't', o[5],
    'ci', cb[1], 'cq', cb[2], 'cb', cb[3], 'cp', cb[4], 'ck', cb[6], 'ckt', cb[7])
  if tonumber(o[3]) >= 0 then redis.call('HSET', key, 'n', o[3]) end
  redis.call('PEXPIRE', key, o[5])
  fire(prefix, o[1], publish)  -- a size of 0 fires at once
end

-- A member's outcome, in its slot: counted once (a slot taken keeps its first outcome).
local function join_barrier(prefix, j, publish)
  local key = prefix .. ':bar:' .. j[1]
  local ttl = redis.call('HGET', key, 't')
  if not ttl then return end  -- gone: its ttl passed
  if redis.call('HSETNX', key .. ':r', j[2], j[3]) == 0 then return end
  redis.call('HINCRBY', key, 'j', 1)
  if j[4] == '1' then
    redis.call('HINCRBY', key, 'f', 1)
    redis.call('HSETNX', key, 'ff', j[2])
  end
  redis.call('PEXPIRE', key, ttl)
  redis.call('PEXPIRE', key .. ':r', ttl)
  fire(prefix, j[1], publish)
end

-- The producer published every member: the barrier's size is known.
local function seal_barrier(prefix, barrier_id, size, publish)
  local key = prefix .. ':bar:' .. barrier_id
  local ttl = redis.call('HGET', key, 't')
  if not ttl then return end
  redis.call('HSET', key, 'n', size)
  redis.call('PEXPIRE', key, ttl)
  redis.call('PEXPIRE', key .. ':r', ttl)
  fire(prefix, barrier_id, publish)
end

local function apply_follow(prefix, f, now, publish, store)
  local aborted = workflow_state(prefix, f.workflow) == 'aborted'
  if not aborted then
    for _, o in ipairs(f.opens) do open_barrier(prefix, o, publish) end
    for _, m in ipairs(f.publish) do publish(m) end
  end
  if f.join then join_barrier(prefix, f.join, publish) end
  if aborted then return end  -- its tasks' outcomes stay as the abort left them
  for _, r in ipairs(f.results) do store(r[1], r[2], r[3]) end
  if f.finish ~= '' then end_workflow(prefix, f.workflow, f.finish, f.failed_task, now) end
end
