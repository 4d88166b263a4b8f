-- follow.lua: apply a workflow follow on its own (a task an abort removed before it ran
-- leaves its group and workflow this way); see workflows.lua.
-- KEYS: none.  ARGV: prefix, record ttl ms, the results' prefix, then the follow (a count,
--   then its values).
-- Returns the messages registered (6 values each, see outbox_publisher in lib.lua).
local prefix, record_ttl, results = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local published = {}
local follow = read_follow(ARGV, 4)
if follow then
  apply_follow(prefix, follow, now, outbox_publisher(prefix, record_ttl, results, now, published),
    function(t, data, ttl) store_result(results, t, data, ttl) end)
end
return published
