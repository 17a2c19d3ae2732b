-- Lists or revokes the sessions of one user within a tenant.
--
-- KEYS[1]  the user's index (ZSET of session id -> expiry ms)
-- ARGV[1]  'list' | 'revoke'
-- ARGV[2]  the session key prefix of the tenant (`tg:session:{tenant}:`); session ids are
--          [A-Za-z0-9_-] so prefix .. id is exactly the key the app would build, and it
--          shares the tenant's hash tag (same cluster slot as KEYS[1]).
--
-- Entries whose session has expired or was destroyed are dropped first, so the index is
-- consistent with expiry whenever it is read. 'list' returns { id1, ttl1_ms, id2, ... };
-- 'revoke' deletes every listed session and the index and returns how many it deleted.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idx = KEYS[1]
redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
local ids = redis.call('ZRANGE', idx, 0, -1)
local out = {}
local n = 0
for i = 1, #ids do
  local key = ARGV[2] .. ids[i]
  local pttl = redis.call('PTTL', key)
  if pttl == -2 then
    redis.call('ZREM', idx, ids[i])
  elseif ARGV[1] == 'revoke' then
    redis.call('DEL', key)
    n = n + 1
  else
    out[#out + 1] = ids[i]
    out[#out + 1] = tostring(pttl)
  end
end
if ARGV[1] == 'revoke' then
  redis.call('DEL', idx)
  return n
end
return out
