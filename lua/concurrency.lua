-- Leases of requests in flight: one sorted set per scope (the tenant's, the user's, a
-- route's), each lease a member scored with its expiry on the Redis clock. Expired leases
-- (an instance that crashed never released them) are dropped before every count.
--
-- KEYS[1..n]  the lease sets of one request (all of one tenant: one slot)
-- KEYS[n + 1] the lease's release marker: set by a release that found nothing to remove
--             (it overtook its own acquire, e.g. after a client-side timeout), so that
--             the late acquire adds nothing
-- ARGV[1]  'acquire' | 'renew' | 'release'
-- ARGV[2]  the lease id
-- ARGV[3]  lease lifetime ms
-- ARGV[3 + i]  the cap of KEYS[i] (acquire)
--
-- acquire: all or nothing: { 1 } when every set had room (the lease is in each), { 0, i }
--          with i the first full set, { 2 } when the lease was released already.
-- renew:   { n } the sets that still held the lease (their expiry moved on).
-- release: { n } the sets the lease was removed from.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = ARGV[1]
local id = ARGV[2]
local lease = tonumber(ARGV[3])
local n = #KEYS - 1
local marker = KEYS[#KEYS]

-- A set lives as long as its longest lease: never shortened by a shorter one (instances
-- with different lease lifetimes share sets during a rolling change).
local function keep(key)
  if redis.call('PTTL', key) < lease then
    redis.call('PEXPIRE', key, lease)
  end
end

if mode == 'acquire' then
  if redis.call('EXISTS', marker) == 1 then
    return { 2 }
  end
  for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + i]) then
      return { 0, i }
    end
  end
  for i = 1, n do
    redis.call('ZADD', KEYS[i], now + lease, id)
    keep(KEYS[i])
  end
  return { 1 }
end

local done = 0
for i = 1, n do
  if mode == 'renew' then
    if redis.call('ZSCORE', KEYS[i], id) then
      redis.call('ZADD', KEYS[i], now + lease, id)
      keep(KEYS[i])
      done = done + 1
    end
  else
    done = done + redis.call('ZREM', KEYS[i], id)
  end
end
if mode == 'release' and done == 0 then
  redis.call('SET', marker, '1', 'PX', lease)
end
return { done }
