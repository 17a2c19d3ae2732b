-- Saves the changes one request made to a session, atomically. Only changed fields are
-- written (one HSET and one HDEL of those fields), so concurrent requests that change
-- different fields never lose each other's updates. Hash fields: `_c` creation time and
-- `_r` this save's time (ms, Redis clock; a read derives the TTL left from it), `_u` the
-- user, `f:<name>` JSON values. Every TTL is set here, from the Redis clock, and is capped by
-- the session's absolute deadline, so Redis itself expires the session at whichever comes
-- first: inactivity or absolute lifetime.
--
-- KEYS[1]  the session hash to write (the new one when renaming)
-- KEYS[2]  the user index after the save (a ZSET of session id -> expiry ms), or KEYS[1]
-- KEYS[3]  the user index before the save, or KEYS[1]
-- KEYS[4]  the session hash to rename from (cycle_id), or KEYS[1]
-- ARGV[1]  mode: 'create' | 'update' | 'destroy'
-- ARGV[2]  inactivity TTL ms        ARGV[3]  absolute lifetime ms
-- ARGV[4]  session id (member in the user index)
-- ARGV[5]  old session id when renaming, else ''
-- ARGV[6]  '1' if KEYS[2] is an index to add to, else '0'
-- ARGV[7]  '1' if KEYS[3] is an index to remove the old member from, else '0'
-- ARGV[8]  user op: '' keep, 's' set to ARGV[9], 'u' unset
-- ARGV[9]  user id for 's'
-- ARGV[10] '1' to clear every data field first
-- ARGV[11] n = number of fields to set; then n (field, value) pairs; then fields to delete
--
-- Returns 1 when saved (the TTL in ms is the second element), 0 when the session no longer
-- exists (expired or destroyed meanwhile: nothing is resurrected), -1 when the target id
-- is taken (create/rename collision: the caller retries with a fresh id).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local mode = ARGV[1]

if mode == 'destroy' then
  redis.call('DEL', key)
  if ARGV[7] == '1' then
    redis.call('ZREM', KEYS[3], ARGV[4])
  end
  return { 1, 0 }
end

local old_member = ARGV[4]
local created
if ARGV[5] ~= '' then
  -- A session has a creation time: a record without one (fields a plain update wrote after
  -- the session was destroyed) is no session to rename.
  if redis.call('HEXISTS', KEYS[4], '_c') == 0 then
    return { 0, 0 }
  end
  if redis.call('RENAMENX', KEYS[4], key) == 0 then
    return { -1, 0 }
  end
  old_member = ARGV[5]
  created = tonumber(redis.call('HGET', key, '_c')) or now
elseif mode == 'create' then
  if redis.call('EXISTS', key) == 1 then
    return { -1, 0 }
  end
  created = now
  redis.call('HSET', key, '_c', tostring(now))
else
  -- An update: the session's creation time, which only a live session has (one command
  -- for both questions: is it still there, and when must it end).
  local c = redis.call('HGET', key, '_c')
  if not c then
    return { 0, 0 }
  end
  created = tonumber(c) or now
end

local ttl = math.min(tonumber(ARGV[2]), created + tonumber(ARGV[3]) - now)
if ttl <= 0 then
  redis.call('DEL', key)
  if ARGV[7] == '1' then
    redis.call('ZREM', KEYS[3], old_member)
  end
  return { 0, 0 }
end

if ARGV[10] == '1' then
  local fields = redis.call('HKEYS', key)
  for i = 1, #fields do
    if string.sub(fields[i], 1, 2) == 'f:' then
      redis.call('HDEL', key, fields[i])
    end
  end
end
-- Every field written in one HSET, every field removed in one HDEL. `_r` records this save
-- on the Redis clock: a read derives the remaining TTL from it (one HGETALL, no PTTL).
local n = tonumber(ARGV[11])
local set = { '_r', tostring(now) }
local i = 12
for _ = 1, n do
  set[#set + 1] = ARGV[i]
  set[#set + 1] = ARGV[i + 1]
  i = i + 2
end
local del = {}
while i <= #ARGV do
  del[#del + 1] = ARGV[i]
  i = i + 1
end
if ARGV[8] == 's' then
  set[#set + 1] = '_u'
  set[#set + 1] = ARGV[9]
elseif ARGV[8] == 'u' then
  del[#del + 1] = '_u'
end
redis.call('HSET', key, unpack(set))
if #del > 0 then redis.call('HDEL', key, unpack(del)) end

redis.call('PEXPIRE', key, ttl)
if ARGV[7] == '1' then
  redis.call('ZREM', KEYS[3], old_member)
end
if ARGV[6] == '1' then
  local idx = KEYS[2]
  redis.call('ZADD', idx, now + ttl, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
  if redis.call('PTTL', idx) < ttl then
    redis.call('PEXPIRE', idx, ttl)
  end
end
return { 1, ttl }
