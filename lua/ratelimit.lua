-- tenant-guard: decide every rate-limit rule of one request atomically.
--
-- KEYS[i]   the counter of rule i (all keys carry the tenant's hash tag: one slot)
-- ARGV[1]   mode: "check" (consume if every enforced rule allows) or "peek" (never write)
-- ARGV[2]   cost of the request (>= 1)
-- ARGV[3]   nonce, unique per call (members of the exact log)
-- then per rule i, 6 values starting at ARGV[4 + (i-1)*6]:
--   algo      "log" (exact, sorted set), "win" (compact, sub-window buckets) or "gcra"
--   limit     units allowed in any window of window_ms (gcra: the burst)
--   window_ms window length
--   bucket_us sub-window width in microseconds (win); emission interval (gcra:
--             ceil(window_ms * 1000 / limit), one unit refills every bucket_us)
--   nbuckets  ceil(window_ms * 1000 / bucket_us) (win only)
--   shadow    1: record the decision, never block
-- then, optionally, per rule i: ARGV[4 + nrules*6 + (i-1)] units an app instance admitted
--   for that counter while Redis was unusable (outage mode `local`), charged back first and
--   unconditionally (at most `limit` of them, at the current time), so this decision and
--   the following ones count them. They are not part of the request: the all-or-nothing
--   rule below concerns the request's cost only.
-- Mode "charge": apply those charges only; nothing else is written, and the reply is the
--   state after them (as for "peek", the cost only tells what would fit).
--
-- Time comes from Redis TIME, never from the caller, so all app instances share one clock.
-- Nothing is written unless every enforced (non-shadow) rule allows; then every rule that
-- itself allows is charged and every key written gets its TTL here, in the same script.
--
-- Both algorithms guarantee that no window (t - window_ms, t] ever holds more than `limit`
-- admitted units:
--   log: counts exactly the members scored in the window.
--   win: counts whole buckets overlapping [t - window_ms, t] (the oldest may be partly
--        outside: counted anyway), so the count is never less than the true one.
-- gcra is the exception, by design ("rate + burst"): it stores the theoretical arrival
-- time (TAT, microseconds) and admits iff max(TAT, now) + cost * T - now <= limit * T,
-- so any time d admits at most limit + d / T units.
--
-- Returns { all_allowed, now_ms, then per rule: allowed, remaining, reset_ms, retry_ms,
-- free1_ms } where reset_ms = time until all counted usage has left the window,
-- retry_ms = time until this request's cost would fit (-1: never, cost > limit),
-- free1_ms = time until one unit frees (0 when one is free now).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Compact buckets use microseconds (exact in a double: ~1.8e15 < 2^53), and the same
-- millisecond clock as the log (now * 1000), as the in-process implementation does.
local now_us = now * 1000
local mode = ARGV[1]
local cost = tonumber(ARGV[2])
local nonce = ARGV[3]
local nrules = #KEYS

local WRAP = 4294967296

-- Layout: 4-byte index of the newest bucket (mod 2^32: a key lives n + 1 buckets, far
-- less than 2^32 of them, so the wrapped difference is exact), then the counts of the
-- buckets up to it as varints (7 bits a byte), oldest first, leading empty buckets left
-- out. A typical counter stays under 44 bytes: Redis then embeds it with its object.
-- Loads the counts shifted so that counts[n + 1] is the current bucket and counts[1] the
-- oldest still overlapping the window.
local function win_load(key, bucket_us, n)
  local cur = math.floor(now_us / bucket_us)
  local counts = {}
  for j = 1, n + 1 do counts[j] = 0 end
  local raw = redis.call('GET', key)
  if raw and #raw >= 5 then
    local base = struct.unpack('<I4', raw)
    local shift = (cur % WRAP - base) % WRAP
    if shift >= WRAP / 2 then
      -- The newest bucket is ahead of this node's clock: the counter was written by a node
      -- whose clock is ahead (a failover). Never read that as a wrap (it would wipe the
      -- counter and restore the quota): stay on the stored bucket, as the in-process store
      -- never lets a counter's time go back.
      cur = cur - (WRAP - shift)
      shift = 0
    end
    if shift <= n then
      local vals = {}
      local i, len = 5, #raw
      while i <= len do
        local v, mul, b = 0, 1, 128
        while b >= 128 and i <= len do
          b = string.byte(raw, i)
          i = i + 1
          v = v + (b % 128) * mul
          mul = mul * 128
        end
        vals[#vals + 1] = v
      end
      local m = #vals
      for k = 1, m do
        local j = k + (n + 1 - m) - shift
        if j >= 1 and j <= n + 1 then counts[j] = vals[k] end
      end
    end
  end
  return cur, counts
end

local function win_save(key, cur, counts, bucket_us, n)
  local parts = { struct.pack('<I4', cur % WRAP) }
  local first = n + 1
  for j = 1, n + 1 do
    if counts[j] > 0 then first = j break end
  end
  for j = first, n + 1 do
    local v = counts[j]
    while v >= 128 do
      parts[#parts + 1] = string.char(v % 128 + 128)
      v = math.floor(v / 128)
    end
    parts[#parts + 1] = string.char(v)
  end
  -- After (n + 1) buckets every count has left the window: the key may go.
  redis.call('SET', key, table.concat(parts), 'PX', math.ceil((n + 1) * bucket_us / 1000))
end

-- Smallest k >= 1 such that dropping the k oldest buckets leaves total - dropped <= target;
-- returns the ms (rounded up) until bucket cur + k starts (when those k have left), or -1.
local function win_wait(counts, n, total, target, cur, bucket_us)
  if total <= target then return 0 end
  local dropped = 0
  for k = 1, n + 1 do
    dropped = dropped + counts[k]
    if total - dropped <= target then
      local us = (cur + k) * bucket_us - now_us
      if us < 0 then us = 0 end
      return math.ceil(us / 1000)
    end
  end
  return -1
end

-- Charge-back of units admitted elsewhere while Redis was unusable (see the header).
local cbase = 4 + nrules * 6
for i = 1, nrules do
  local c = tonumber(ARGV[cbase + i - 1] or '0') or 0
  local base = 4 + (i - 1) * 6
  local algo = ARGV[base]
  local limit = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local bucket_us = tonumber(ARGV[base + 3])
  local n = tonumber(ARGV[base + 4])
  local key = KEYS[i]
  if c > limit then c = limit end
  if c > 0 then
    if algo == 'log' then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
      local args = {}
      for j = 1, c do
        args[#args + 1] = now
        args[#args + 1] = nonce .. ':c' .. j
        if #args >= 200 then
          redis.call('ZADD', key, unpack(args))
          args = {}
        end
      end
      if #args > 0 then redis.call('ZADD', key, unpack(args)) end
      local card = redis.call('ZCARD', key)
      if card > limit then redis.call('ZREMRANGEBYRANK', key, 0, card - limit - 1) end
      redis.call('PEXPIRE', key, window)
    elseif algo == 'gcra' then
      local raw = redis.call('GET', key)
      local tat = now_us
      if raw then
        local v = tonumber(raw)
        if v and v > now_us then tat = v end
      end
      -- Never beyond a full bucket: a charge delays no one longer than a full burst would.
      tat = math.min(tat + c * bucket_us, now_us + limit * bucket_us)
      local ttl = math.ceil((tat - now_us) / 1000)
      if ttl < 1 then ttl = 1 end
      redis.call('SET', key, string.format('%.0f', tat), 'PX', ttl)
    else
      local cur, counts = win_load(key, bucket_us, n)
      counts[n + 1] = counts[n + 1] + c
      win_save(key, cur, counts, bucket_us, n)
    end
  end
end

local results = {}
local all_allowed = 1
local state = {}

for i = 1, nrules do
  local base = 4 + (i - 1) * 6
  local algo = ARGV[base]
  local limit = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local bucket_us = tonumber(ARGV[base + 3])
  local n = tonumber(ARGV[base + 4])
  local shadow = ARGV[base + 5] == '1'
  local key = KEYS[i]
  local r = { algo = algo, limit = limit, window = window, bucket_us = bucket_us, n = n, shadow = shadow }

  if algo == 'log' then
    local from = now - window
    local count = redis.call('ZCOUNT', key, '(' .. from, '+inf')
    r.count = count
    r.allowed = (count + cost <= limit)
    -- retry: the (count + cost - limit)-th oldest member must leave.
    local function leave_after(rank)
      local m = redis.call('ZRANGEBYSCORE', key, '(' .. from, '+inf', 'WITHSCORES', 'LIMIT', rank, 1)
      return tonumber(m[2]) + window - now
    end
    if cost > limit then
      r.retry = -1
    elseif r.allowed then
      r.retry = 0
    else
      r.retry = leave_after(count + cost - limit - 1)
    end
    if count < limit then r.free1 = 0 else r.free1 = leave_after(count - limit) end
    if count == 0 then
      r.reset = 0
    else
      local newest = redis.call('ZREVRANGEBYSCORE', key, '+inf', '(' .. from, 'WITHSCORES', 'LIMIT', 0, 1)
      r.reset = tonumber(newest[2]) + window - now
    end
  elseif algo == 'gcra' then
    local T = bucket_us
    local raw = redis.call('GET', key)
    local tat = now_us
    if raw then
      local v = tonumber(raw)
      if v and v > now_us then tat = v end
    end
    local cap = limit * T
    local ahead = tat - now_us
    r.cur = tat
    r.count = math.ceil(ahead / T)
    r.allowed = (ahead + cost * T <= cap)
    if cost > limit then
      r.retry = -1
    else
      r.retry = math.ceil(math.max(0, ahead + cost * T - cap) / 1000)
    end
    r.free1 = math.ceil(math.max(0, ahead + T - cap) / 1000)
    r.reset = math.ceil(ahead / 1000)
  else
    local cur, counts = win_load(key, bucket_us, n)
    local total = 0
    for j = 1, n + 1 do total = total + counts[j] end
    r.cur, r.counts, r.count = cur, counts, total
    r.allowed = (total + cost <= limit)
    if cost > limit then r.retry = -1 else r.retry = win_wait(counts, n, total, limit - cost, cur, bucket_us) end
    r.free1 = win_wait(counts, n, total, limit - 1, cur, bucket_us)
    if r.free1 < 0 then r.free1 = 0 end
    r.reset = win_wait(counts, n, total, 0, cur, bucket_us)
  end

  if not r.allowed and not shadow then all_allowed = 0 end
  state[i] = r
end

local commit = (mode == 'check' and all_allowed == 1)

for i = 1, nrules do
  local r = state[i]
  local key = KEYS[i]
  local charged = commit and r.allowed
  if charged then
    if r.algo == 'log' then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now - r.window)
      -- One member per unit of cost, added in batches (unpack has a stack limit).
      local args = {}
      for j = 1, cost do
        args[#args + 1] = now
        args[#args + 1] = nonce .. ':' .. j
        if #args >= 200 then
          redis.call('ZADD', key, unpack(args))
          args = {}
        end
      end
      if #args > 0 then redis.call('ZADD', key, unpack(args)) end
      -- Hard cap: never more members than the limit (also after a limit was lowered).
      local card = redis.call('ZCARD', key)
      if card > r.limit then redis.call('ZREMRANGEBYRANK', key, 0, card - r.limit - 1) end
      redis.call('PEXPIRE', key, r.window)
      r.reset = r.window
    elseif r.algo == 'gcra' then
      local tat = r.cur + cost * r.bucket_us
      local ahead = tat - now_us
      local ttl = math.ceil(ahead / 1000)
      if ttl < 1 then ttl = 1 end
      -- %.0f: a microsecond timestamp is past the 14 digits tostring keeps.
      redis.call('SET', key, string.format('%.0f', tat), 'PX', ttl)
      r.reset = math.ceil(ahead / 1000)
      r.free1 = math.ceil(math.max(0, ahead + r.bucket_us - r.limit * r.bucket_us) / 1000)
    else
      r.counts[r.n + 1] = r.counts[r.n + 1] + cost
      win_save(key, r.cur, r.counts, r.bucket_us, r.n)
      r.reset = math.ceil(((r.cur + r.n + 1) * r.bucket_us - now_us) / 1000)
    end
    r.count = r.count + cost
  end
  local remaining = r.limit - r.count
  if remaining < 0 then remaining = 0 end
  if charged and remaining == 0 and r.free1 == 0 and r.algo ~= 'gcra' then
    -- This request used the last unit: the next one frees when the oldest leaves.
    if r.algo == 'log' then
      local m = redis.call('ZRANGEBYSCORE', key, '(' .. (now - r.window), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      r.free1 = tonumber(m[2]) + r.window - now
    else
      r.free1 = win_wait(r.counts, r.n, r.count, r.limit - 1, r.cur, r.bucket_us)
    end
  end
  local a = 0
  if r.allowed then a = 1 end
  results[#results + 1] = a
  results[#results + 1] = remaining
  results[#results + 1] = r.reset
  results[#results + 1] = r.retry
  results[#results + 1] = r.free1
end

local out = { all_allowed, now }
for _, v in ipairs(results) do out[#out + 1] = v end
return out
