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
-- Nothing is charged unless every enforced (non-shadow) rule allows; then every rule that
-- itself allows is charged and every key written gets its TTL here, in the same script.
-- (A check may drop members that left the window from an exact log's set, which changes
-- no count.)
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

local floor, ceil = math.floor, math.ceil
local pack, unpack_s, sub, rep, byte = struct.pack, struct.unpack, string.sub, string.rep, string.byte
local WRAP = 4294967296

-- Compact counter layout (fixed width, so that a check reads and rewrites only what it
-- touches): 1 byte 0x80 + w (w = 1, 2 or 4: bytes per count), the 4-byte index of the
-- newest bucket (mod 2^32: a key lives n + 1 buckets, far less than 2^32 of them, so the
-- wrapped difference is exact), the 4-byte total of the stored counts, then the counts of
-- the buckets up to the newest, w bytes each, oldest first, leading empty buckets left out.
-- A check in the newest bucket unpacks the header and the newest count only; one that
-- moves to a new bucket also the counts that left the window since the last write; the
-- whole list is read only to answer when units free up (a refusal, the last unit, a reset
-- that was not charged). With w = 1 (limits up to 255) a full counter of 31 buckets is 40
-- bytes: Redis embeds it with its object.
local FMT = { [1] = 'B', [2] = '<H', [4] = '<I4' }
local MAXW = { [1] = 255, [2] = 65535, [4] = 4294967295 }
local function width_for(v)
  if v <= 255 then return 1 elseif v <= 65535 then return 2 end
  return 4
end

-- The state of a compact counter at bucket `cur`: what is stored (raw, w, off, m: the
-- remaining stored counts start at byte off, m of them, the last one at bucket cur -
-- shift) and the total of what is still in the window. Counts that left the window since
-- the last write are subtracted here, one by one (O(buckets passed), O(1) when none).
local function win_load(raw, bucket_us, n)
  local r = { cur = floor(now_us / bucket_us), total = 0, m = 0, shift = 0, w = 0 }
  if not raw or #raw < 9 then return r end
  local w = byte(raw, 1) - 128
  local fmt = FMT[w]
  if not fmt or (#raw - 9) % w ~= 0 then return r end
  local base, total = unpack_s('<I4I4', raw, 2)
  local m = (#raw - 9) / w
  local shift = (r.cur % WRAP - base) % WRAP
  if shift >= WRAP / 2 then
    -- The newest bucket is ahead of this node's clock: the counter was written by a node
    -- whose clock is ahead (a failover). Never read that as a wrap (it would wipe the
    -- counter and restore the quota): stay on the stored bucket, as the in-process store
    -- never lets a counter's time go back.
    r.cur = r.cur - (WRAP - shift)
    shift = 0
  end
  if shift > n then return r end
  -- Stored counts at buckets older than cur - n have left the window.
  local d = m - (n + 1 - shift)
  local off = 10
  if d > 0 then
    for j = 0, d - 1 do total = total - unpack_s(fmt, raw, off + j * w) end
    off = off + d * w
    m = m - d
  end
  r.raw, r.w, r.off, r.m, r.shift, r.total = raw, w, off, m, shift, total
  return r
end

-- The counts of the window as an array: counts[n + 1] is bucket cur, counts[1] the oldest
-- still overlapping the window.
local function win_counts(r, n)
  if r.counts then return r.counts end
  local counts = {}
  for j = 1, n + 1 do counts[j] = 0 end
  local fmt = FMT[r.w]
  for j = 1, r.m do
    counts[n + 1 - r.shift - r.m + j] = unpack_s(fmt, r.raw, r.off + (j - 1) * r.w)
  end
  r.counts = counts
  return counts
end

-- Smallest k >= 1 such that dropping the k oldest buckets leaves total - dropped <= target;
-- returns the ms (rounded up) until bucket cur + k starts (when those k have left), or -1.
local function win_wait(r, n, total, target, bucket_us)
  if total <= target then return 0 end
  local counts = win_counts(r, n)
  local dropped = 0
  for k = 1, n + 1 do
    dropped = dropped + counts[k]
    if total - dropped <= target then
      local us = (r.cur + k) * bucket_us - now_us
      if us < 0 then us = 0 end
      return ceil(us / 1000)
    end
  end
  return -1
end

-- Adds `units` to bucket cur and writes the counter with its TTL: after (n + 1) buckets
-- every count has left the window and the key may go.
local function win_charge(key, r, units, limit, bucket_us, n)
  local total = r.total + units
  local out
  local w = r.w
  if r.m > 0 and r.shift == 0 then
    local at = r.off + (r.m - 1) * w
    local v = unpack_s(FMT[w], r.raw, at) + units
    if v <= MAXW[w] then
      out = pack('<BI4I4', 128 + w, r.cur % WRAP, total) .. sub(r.raw, r.off, at - 1)
        .. pack(FMT[w], v)
    end
  elseif r.m > 0 then
    if units <= MAXW[w] then
      out = pack('<BI4I4', 128 + w, r.cur % WRAP, total) .. sub(r.raw, r.off, r.off + r.m * w - 1)
        .. rep('\0', (r.shift - 1) * w) .. pack(FMT[w], units)
    end
  else
    w = width_for(math.max(limit, units))
    out = pack('<BI4I4', 128 + w, r.cur % WRAP, total) .. pack(FMT[w], units)
  end
  if not out then
    -- A count outgrew its width (charge-backs past the limit): rewrite them all wider.
    local counts = win_counts(r, n)
    counts[n + 1] = counts[n + 1] + units
    local first, top = n + 1, limit
    for j = n + 1, 1, -1 do
      if counts[j] > 0 then first = j end
      if counts[j] > top then top = counts[j] end
    end
    w = width_for(top)
    local parts = { pack('<BI4I4', 128 + w, r.cur % WRAP, total) }
    for j = first, n + 1 do parts[#parts + 1] = pack(FMT[w], counts[j]) end
    out = table.concat(parts)
    r.counts = nil
  elseif r.counts then
    r.counts[n + 1] = r.counts[n + 1] + units
  end
  redis.call('SET', key, out, 'PX', ceil((n + 1) * bucket_us / 1000))
  -- The stored state is now `out`, at bucket cur.
  r.raw, r.w, r.off, r.shift, r.total = out, w, 10, 0, total
  r.m = (#out - 9) / w
end

local function gcra_tat(raw)
  local tat = now_us
  if raw then
    local v = tonumber(raw)
    if v and v > now_us then tat = v end
  end
  return tat
end

-- Rules read as strings (compact, gcra) are fetched in one MGET.
local specs, strkeys, strpos = {}, {}, {}
for i = 1, nrules do
  local base = 4 + (i - 1) * 6
  local algo = ARGV[base]
  specs[i] = {
    algo = algo, limit = tonumber(ARGV[base + 1]), window = tonumber(ARGV[base + 2]),
    bucket_us = tonumber(ARGV[base + 3]), n = tonumber(ARGV[base + 4]),
    shadow = ARGV[base + 5] == '1',
  }
  if algo ~= 'log' then
    strkeys[#strkeys + 1] = KEYS[i]
    strpos[i] = #strkeys
  end
end
local strvals = {}
if #strkeys > 0 then strvals = redis.call('MGET', unpack(strkeys)) end
local function raw_of(i)
  local v = strvals[strpos[i]]
  if v == false then return nil end
  return v
end

-- Charge-back of units admitted elsewhere while Redis was unusable (see the header).
local cbase = 4 + nrules * 6
if ARGV[cbase] then
  for i = 1, nrules do
    local c = tonumber(ARGV[cbase + i - 1] or '0') or 0
    local sp = specs[i]
    local key = KEYS[i]
    if c > sp.limit then c = sp.limit end
    if c > 0 then
      if sp.algo == 'log' then
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now - sp.window)
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
        if card > sp.limit then redis.call('ZREMRANGEBYRANK', key, 0, card - sp.limit - 1) end
        redis.call('PEXPIRE', key, sp.window)
      elseif sp.algo == 'gcra' then
        -- Never beyond a full bucket: a charge delays no one longer than a full burst would.
        local tat = math.min(gcra_tat(raw_of(i)) + c * sp.bucket_us, now_us + sp.limit * sp.bucket_us)
        local ttl = ceil((tat - now_us) / 1000)
        if ttl < 1 then ttl = 1 end
        local v = string.format('%.0f', tat)
        redis.call('SET', key, v, 'PX', ttl)
        strvals[strpos[i]] = v
      else
        local r = win_load(raw_of(i), sp.bucket_us, sp.n)
        win_charge(key, r, c, sp.limit, sp.bucket_us, sp.n)
        strvals[strpos[i]] = r.raw
      end
    end
  end
end

local all_allowed = 1
local state = {}

for i = 1, nrules do
  local sp = specs[i]
  local key = KEYS[i]
  local limit = sp.limit
  local r
  if sp.algo == 'log' then
    local from = now - sp.window
    r = { from = from }
    local count
    if mode == 'check' then
      -- Drop what left the window now (a check may write), so the set's size is the count.
      redis.call('ZREMRANGEBYSCORE', key, '-inf', from)
      count = redis.call('ZCARD', key)
    else
      count = redis.call('ZCOUNT', key, '(' .. from, '+inf')
    end
    r.count = count
    r.allowed = (count + cost <= limit)
    -- The (rank + 1)-th oldest member in the window leaves after this many ms.
    r.leave_after = function(rank)
      local m = redis.call('ZRANGEBYSCORE', key, '(' .. from, '+inf', 'WITHSCORES', 'LIMIT', rank, 1)
      return tonumber(m[2]) + sp.window - now
    end
    if cost > limit then
      r.retry = -1
    elseif r.allowed then
      r.retry = 0
    else
      r.retry = r.leave_after(count + cost - limit - 1)
    end
    if count < limit then r.free1 = 0 else r.free1 = r.leave_after(count - limit) end
  elseif sp.algo == 'gcra' then
    local T = sp.bucket_us
    local tat = gcra_tat(raw_of(i))
    local cap = limit * T
    local ahead = tat - now_us
    r = { cur = tat, count = ceil(ahead / T) }
    r.allowed = (ahead + cost * T <= cap)
    if cost > limit then
      r.retry = -1
    else
      r.retry = ceil(math.max(0, ahead + cost * T - cap) / 1000)
    end
    r.free1 = ceil(math.max(0, ahead + T - cap) / 1000)
    r.reset = ceil(ahead / 1000)
  else
    r = win_load(raw_of(i), sp.bucket_us, sp.n)
    local total = r.total
    r.count = total
    r.allowed = (total + cost <= limit)
    if cost > limit then
      r.retry = -1
    else
      r.retry = win_wait(r, sp.n, total, limit - cost, sp.bucket_us)
    end
    r.free1 = win_wait(r, sp.n, total, limit - 1, sp.bucket_us)
    if r.free1 < 0 then r.free1 = 0 end
  end
  if not r.allowed and not sp.shadow then all_allowed = 0 end
  state[i] = r
end

local commit = (mode == 'check' and all_allowed == 1)

local out = { all_allowed, now }
for i = 1, nrules do
  local sp = specs[i]
  local r = state[i]
  local key = KEYS[i]
  local charged = commit and r.allowed
  if sp.algo == 'log' then
    if charged then
      -- One member per unit of cost, added in batches (unpack has a stack limit). The set
      -- holds count + cost <= limit members now: the hard cap holds without a ZCARD.
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
      redis.call('PEXPIRE', key, sp.window)
      r.reset = sp.window
      r.count = r.count + cost
      if r.count >= sp.limit and r.free1 == 0 then
        -- This request used the last unit: the next one frees when the oldest leaves.
        r.free1 = r.leave_after(0)
      end
    elseif r.count == 0 then
      r.reset = 0
    else
      local newest = redis.call('ZREVRANGEBYSCORE', key, '+inf', '(' .. r.from, 'WITHSCORES', 'LIMIT', 0, 1)
      r.reset = tonumber(newest[2]) + sp.window - now
    end
  elseif sp.algo == 'gcra' then
    if charged then
      local tat = r.cur + cost * sp.bucket_us
      local ahead = tat - now_us
      local ttl = ceil(ahead / 1000)
      if ttl < 1 then ttl = 1 end
      -- %.0f: a microsecond timestamp is past the 14 digits tostring keeps.
      redis.call('SET', key, string.format('%.0f', tat), 'PX', ttl)
      r.reset = ceil(ahead / 1000)
      r.free1 = ceil(math.max(0, ahead + sp.bucket_us - sp.limit * sp.bucket_us) / 1000)
      r.count = r.count + cost
    end
  else
    local n, bucket_us = sp.n, sp.bucket_us
    if charged then
      win_charge(key, r, cost, sp.limit, bucket_us, n)
      r.count = r.count + cost
      r.reset = ceil(((r.cur + n + 1) * bucket_us - now_us) / 1000)
      if r.count >= sp.limit and r.free1 == 0 then
        -- This request used the last unit: the next one frees when the oldest leaves.
        r.free1 = win_wait(r, n, r.count, sp.limit - 1, bucket_us)
      end
    else
      r.reset = win_wait(r, n, r.count, 0, bucket_us)
    end
  end
  local remaining = sp.limit - r.count
  if remaining < 0 then remaining = 0 end
  local a = 0
  if r.allowed then a = 1 end
  out[#out + 1] = a
  out[#out + 1] = remaining
  out[#out + 1] = r.reset
  out[#out + 1] = r.retry
  out[#out + 1] = r.free1
end
return out
