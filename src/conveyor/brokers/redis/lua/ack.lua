-- ack.lua (complete): acknowledge each entry and, only if this consumer still owned it,
-- store its result, delete it, and apply its workflow follow (workflows.lua): what comes
-- next published, its group barrier joined, its workflow ended, in this same step. An
-- entry is pending with the consumer that read it and no other (reap.lua acknowledges
-- what it takes over in the same script), so XACK's answer is the ownership check.
-- KEYS: tag.  ARGV: group, consumer, prefix, then per message 5 values and a follow:
--   stream, entry id, task id, result bytes ('' = none), result ttl ms (<= 0: no expiry),
--   the follow (a count, then that many values; 0 = none).
-- Returns 1 per message on success; 0 if the entry was reclaimed by another worker (a
-- zombie's late completion is then dropped, result and follow included).
local tag, group, consumer, prefix = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local out = {}
local done = {}  -- stream -> entry ids, acknowledged and deleted together below
local now = nil
local i = 4
while i <= #ARGV do
  local stream, id, task_id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local follow, after = read_follow(ARGV, i + 5)
  if redis.call('XACK', stream, group, id) == 1 then
    store_result(prefix, task_id, ARGV[i + 3], ARGV[i + 4])
    local job = tag .. ':job:' .. task_id
    release_key(tag, job, prefix)
    redis.call('DEL', job)
    done[stream] = done[stream] or {}
    table.insert(done[stream], id)
    if follow then
      now = now or now_ms()
      apply_follow(prefix, follow, now, stream_publisher(prefix, group, now),
        function(t, data, ttl) store_result(prefix, t, data, ttl) end)
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  i = after
end
for stream, ids in pairs(done) do
  redis.call('XDEL', stream, unpack(ids))
end
return out
