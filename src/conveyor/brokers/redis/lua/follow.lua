-- follow.lua: apply a workflow follow on its own (a task an abort removed before it ran
-- leaves its group and workflow this way); see workflows.lua.
-- KEYS: none used.  ARGV: group, prefix, then the follow (a count, then its values).
-- Returns 1.
local group, prefix = ARGV[1], ARGV[2]
local now = now_ms()
local follow = read_follow(ARGV, 3)
if follow then
  apply_follow(prefix, follow, now, stream_publisher(prefix, group, now),
    function(t, data, ttl) store_result(prefix, t, data, ttl) end)
end
return 1
