-- register.lua (publish): admit each message to the ledger before it is published, so an
-- idempotency key, or a task id still waiting or running, admits one message.
-- KEYS: none.  ARGV: prefix, record ttl ms, the results' prefix, then per message 9
--   values: task id, queue,
--   body, priority, due ms (0: now), key ('' = none), key ttl ms, reused (1: the producer
--   chose the id; forget the result and progress an earlier run left), workflow ('' =
--   none: else the task joins the workflow's set of held tasks).
-- Returns per message {the task id that stands for it, copy to publish (0: publish
-- nothing)}. A record lives until due + record ttl: one whose publish never happened (the
-- producer died between the two steps) frees its key then.
local prefix, record_ttl, results = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out = {}
for i = 4, #ARGV, 9 do
  local id, copy = register_one(prefix, record_ttl, results, now, ARGV[i], ARGV[i + 1],
    ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4]), ARGV[i + 5], ARGV[i + 6], ARGV[i + 7],
    ARGV[i + 8])
  out[#out + 1] = {id, copy}
end
return out
