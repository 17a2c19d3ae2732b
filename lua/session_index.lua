-- Lists or revokes the sessions of one user within a tenant.
--
-- KEYS[1]      the user's index (ZSET of session id -> expiry ms)
-- KEYS[1 + i]  the session key of ARGV[1 + i] (every key the script touches is declared,
--              as Redis Cluster requires: all share the tenant's hash tag, one slot)
-- ARGV[1]      'list' | 'revoke'
-- ARGV[1 + i]  the session ids the caller read from the index just before
--
-- Entries whose session has expired or was destroyed are dropped first, so the index is
-- consistent with expiry whenever it is read. An id in the index that the caller did not
-- declare (added since it read the index) is not touched: the reply says so and the caller
-- reads the index again and repeats.
--
-- Returns 'list': { undeclared, id1, ttl1_ms, id2, ... }; 'revoke': { undeclared, deleted }
-- where undeclared is the number of index entries the caller must come back for. 'revoke'
-- deletes the index itself once nothing undeclared is left in it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idx = KEYS[1]
local declared = {}
for i = 2, #ARGV do declared[ARGV[i]] = KEYS[i] end
redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
local ids = redis.call('ZRANGE', idx, 0, -1)
local out = {}
local n = 0
local undeclared = 0
for i = 1, #ids do
  local key = declared[ids[i]]
  if not key then
    undeclared = undeclared + 1
  else
    -- A session is a hash with a creation time: a record without one (fields a plain update
    -- wrote after the session was destroyed, about to be removed) is no session.
    local pttl = redis.call('PTTL', key)
    if pttl == -2 or redis.call('HEXISTS', key, '_c') == 0 then
      redis.call('ZREM', idx, ids[i])
    elseif ARGV[1] == 'revoke' then
      redis.call('DEL', key)
      redis.call('ZREM', idx, ids[i])
      n = n + 1
    else
      out[#out + 1] = ids[i]
      out[#out + 1] = tostring(pttl)
    end
  end
end
if ARGV[1] == 'revoke' then
  if undeclared == 0 then redis.call('DEL', idx) end
  return { undeclared, n }
end
table.insert(out, 1, undeclared)
return out
