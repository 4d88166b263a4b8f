-- take_token.lua: take one token from a token bucket, on the server's clock.
-- KEYS: the bucket (hash: t = tokens, u = ms they were counted at).
-- ARGV: rate (tokens a second), burst (the bucket's size).
-- Returns "0" when a token was taken, else the seconds until the next one (a string:
-- Lua numbers reach redis-py as integers). A new bucket is full; an idle one expires
-- once it would be full again. conveyor.flow.take_bucket is the same arithmetic.
local key = KEYS[1]
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local saved = redis.call('HMGET', key, 't', 'u')
local tokens, at = tonumber(saved[1]), tonumber(saved[2])
if tokens == nil or at == nil then
  tokens, at = burst, now
end
now = math.max(now, at)  -- the bucket's time never goes back (a clock step on the server)
tokens = math.min(burst, tokens + (now - at) / 1000 * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', key, 't', tostring(tokens), 'u', now)
redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
