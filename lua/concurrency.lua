-- Leases of requests in flight: one sorted set per scope (the tenant's, the user's), each
-- lease a member scored with its expiry on the Redis clock. Expired leases (an instance
-- that crashed never released them) are dropped before every count.
--
-- KEYS[i]  the lease sets of one request (all of one tenant: one slot)
-- ARGV[1]  'acquire' | 'renew' | 'release'
-- ARGV[2]  the lease id
-- ARGV[3]  lease lifetime ms
-- ARGV[3 + i]  the cap of KEYS[i] (acquire)
--
-- acquire: all or nothing: { 1 } when every set had room (the lease is in each), else
--          { 0, i, ms } with i the first full set and ms until its oldest lease expires.
-- renew:   { n } the sets that still held the lease (their expiry moved on).
-- release: { n } the sets the lease was removed from.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = ARGV[1]
local id = ARGV[2]
local lease = tonumber(ARGV[3])

if mode == 'acquire' then
  for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + i]) then
      local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
      local wait = lease
      if oldest[2] then wait = tonumber(oldest[2]) - now end
      return { 0, i, wait }
    end
  end
  for i = 1, #KEYS do
    redis.call('ZADD', KEYS[i], now + lease, id)
    -- Every lease in the set ends within `lease`: the set may end then too.
    redis.call('PEXPIRE', KEYS[i], lease)
  end
  return { 1 }
end

local n = 0
for i = 1, #KEYS do
  if mode == 'renew' then
    if redis.call('ZSCORE', KEYS[i], id) then
      redis.call('ZADD', KEYS[i], now + lease, id)
      redis.call('PEXPIRE', KEYS[i], lease)
      n = n + 1
    end
  else
    n = n + redis.call('ZREM', KEYS[i], id)
  end
end
return { n }
