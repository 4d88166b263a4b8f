-- seal_barrier.lua: the producer published every member of a group: set its barrier's
-- size, and fire its callback if that many joined already (workflows.lua).
-- KEYS: none used.  ARGV: group, prefix, barrier id, size.
-- Returns 1.
local group, prefix = ARGV[1], ARGV[2]
local now = now_ms()
seal_barrier(prefix, ARGV[3], ARGV[4], stream_publisher(prefix, group, now))
return 1
