-- Loads a session: one round trip, read-only unless the session is past its absolute
-- lifetime (then it is deleted).
--
-- KEYS[1]  the session hash (tg:session:{tenant}:<id>)
-- ARGV[1]  absolute lifetime in ms (SESSION_MAX_LIFETIME)
--
-- Returns false when there is no live session, else a flat array of strings:
--   { now_ms, pttl_ms, field1, value1, field2, value2, ... }
-- Fields: `_c` creation time (ms, Redis clock), `_u` user id, `f:<name>` JSON values.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local created = redis.call('HGET', KEYS[1], '_c')
if not created then
  return false
end
if now >= tonumber(created) + tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return false
end
local out = { tostring(now), tostring(redis.call('PTTL', KEYS[1])) }
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do
  out[#out + 1] = all[i]
end
return out
