-- seal_barrier.lua: the producer published every member of a group: set its barrier's
-- size, and fire its callback if that many joined already (workflows.lua).
-- KEYS: none.  ARGV: prefix, record ttl ms, the results' prefix, barrier id, size.
-- Returns the messages registered (6 values each, see outbox_publisher in lib.lua).
local prefix, record_ttl, results = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local published = {}
seal_barrier(prefix, ARGV[4], ARGV[5],
  outbox_publisher(prefix, record_ttl, results, now_ms(), published))
return published
