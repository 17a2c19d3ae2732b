-- tenant-guard: decide the rate-limit rules of one or more requests, each atomically and
-- in order (a batch: requests that waited for the same connection, one script call).
--
-- KEYS      per request: the counters of its rules, then the block keys of those of its
--           rules that block (block_ms > 0), in rule order; request 1's, then request 2's,
--           ... (all keys of a call share one slot: the tenant's hash tag, or any keys on a
--           single node)
-- ARGV[1]   number of requests in the call
-- ARGV[2]   number of distinct rules in the call, then 8 values for each (rule j at
--           3 + (j-1)*8); requests name them by number, so a rule's values travel and are
--           parsed once per call however many requests use it:
--     algo      "log" (exact, sorted set), "win" (compact, sub-window buckets) or "gcra"
--     limit     units allowed in any window of window_ms (gcra: the burst)
--     window_ms window length
--     bucket_us sub-window width in microseconds (win); emission interval (gcra:
--               ceil(window_ms * 1000 / limit), one unit refills every bucket_us)
--     nbuckets  ceil(window_ms * 1000 / bucket_us) (win only)
--     shadow    1: record the decision, never block
--     block_ms  0, or: once the rule denies a check (mode "check"), it refuses that counter's
--               identity for block_ms (RATE_LIMIT_BLOCK), doubled on each repeat within
--     block_max block_max ms of the previous block's end, never longer than block_max. The
--               block key holds "<until_ms> <strikes>" and lives until block_max after the
--               block ends (so a repeat is recognised). A blocked rule denies without
--               counting: allowed code 2, remaining 0, reset/retry/free1 = time left.
-- then per request, starting at its offset a (3 + nrules_distinct*8 for the first):
--   ARGV[a]     nkeys: number of its rules (its keys are the next nkeys of KEYS)
--   ARGV[a+1]   mode: "check" (consume if every enforced rule allows), "peek" (never
--               write), "lease", "charge" or "refund" (below)
--   ARGV[a+2]   cost of the request (>= 1)
--   ARGV[a+3]   nonce, unique per request (members of the exact log)
--   ARGV[a+4]   ncharges: 0, or nkeys when charge-back values follow the rules
--   then nkeys values: the number of each key's rule in the list above
--   then ncharges values: per rule, units an app instance admitted for that counter while
--     Redis was unusable (outage mode `local`), charged back first and unconditionally (at
--     most `limit` of them, at the current time), so this decision and the following ones
--     count them. They are not part of the request: the all-or-nothing rule below
--     concerns the request's cost only.
--   Mode "charge": apply those charges only; nothing else is written, and the reply is the
--   state after them (as for "peek", the cost only tells what would fit).
--   Mode "lease": a "check" whose values are not charge-backs but units to reserve: once
--     the request is admitted, each compact rule with a value v > 0 is charged, with the
--     cost, min(v, what is left after the cost) more units, which the caller admits in
--     process (a lease, shorter than what is left of the current bucket: every window that
--     holds a leased admission holds its reservation). Reserved units count as admitted.
--     The reply of such a request ends with the units reserved per rule (0 for the rest).
--   A request may instead be the one value "=": the previous request again (its rules,
--   mode, cost and nonce, no charge-backs) on its own keys. The client sends it for a check
--   after a check of the same rules and cost when none of them is an exact log (whose
--   members are named by the nonce).
--   Mode "refund": the values take units back instead, from compact counters only (token
--   budgets settled after the response: the estimate charged at admission was more than
--   the real usage), each from the bucket that held time ARGV[a+3] (here the store's time
--   in ms of that admission, not a nonce), at most what that bucket holds, nothing once it
--   has left the window; the reply is the state after them.
--
-- Time comes from Redis TIME, never from the caller, so all app instances share one clock.
-- Nothing is charged for a request unless every enforced (non-shadow) rule allows; then
-- every rule that itself allows is charged and every key written gets its TTL here, in
-- the same script. A later request of the call sees what an earlier one charged. (A check
-- may drop members that left the window from an exact log's set, which changes no count.)
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
-- Returns, per request: all_allowed (-1: a counter of the request holds another type;
-- nothing was written for it), now_ms, then per rule: allowed (1; 0 denied; 2 denied and
-- blocked: already, or from this denial on), remaining, reset_ms,
-- retry_ms, free1_ms, where reset_ms = time until all counted usage has left the window,
-- retry_ms = time until this request's cost would fit (-1: never, cost > limit),
-- free1_ms = time until one unit frees (0 when one is free now); then, for a request in
-- mode "lease", the units reserved per rule. The common answer is shorter: all_allowed 3
-- (every rule allowed, with a unit to spare), now_ms, then per rule remaining and
-- reset_ms only (allowed 1, retry_ms 0, free1_ms 0).

-- Globals read once (a local is cheaper to reach than a global on every use).
local KEYS, ARGV = KEYS, ARGV
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Compact buckets use microseconds (exact in a double: ~1.8e15 < 2^53), and the same
-- millisecond clock as the log (now * 1000), as the in-process implementation does.
local now_us = now * 1000
local floor, ceil = math.floor, math.ceil
local upk, pk, sub = struct.unpack, struct.pack, string.sub
local WRAP = 4294967296

-- Compact counter layout (fixed width, so that a check reads and rewrites only what it
-- touches): 1 byte 0x80 + w (w = 1, 2 or 4: bytes per count), the 4-byte index of the
-- newest bucket (mod 2^32: a key lives n + 1 buckets, far less than 2^32 of them, so the
-- wrapped difference is exact), the 4-byte total of the stored counts, then the counts of
-- the buckets up to the newest, w bytes each, oldest first, leading empty buckets left out.
-- A check in the newest bucket unpacks the header and the newest count only; one that
-- moves on also the counts that left the window since the last write; the whole list is
-- read only to answer when units free up (a refusal, the last unit, an uncharged reset).
-- w is as small as the largest count allows (a counter is written wider when a count
-- outgrows it). With w = 1 (counts up to 255) a full counter of 31 buckets is 40 bytes:
-- Redis embeds it with its object.
--
-- The common path is written inline, without helper closures or tables per rule (each
-- costs the script time on every call); the rest comes from slow() on first need.
local FMT1, FMT2, FMT4 = 'B', '<H', '<I4'
-- By width: a count's format, what a count must stay under, and a whole counter (tag,
-- newest index, total, the older counts as one string, the newest count).
local FMTW = { [1] = FMT1, [2] = FMT2, [4] = FMT4 }
local CAPW = { [1] = 256, [2] = 65536, [4] = WRAP }
local WHOLE = { [1] = '<BI4I4c0B', [2] = '<BI4I4c0H', [4] = '<BI4I4c0I4' }

-- Per-rule state, positional: [1] algo (1 log, 2 gcra, 3 win), [2] count, [3] allowed,
-- [4] retry, [5] free1, then
--   log:  [6] from
--   gcra: [6] tat, [7] reset
--   win:  [6] cur, [7] m, [8] shift, [9] w, [10] off, [11] raw, [12] counts (on demand)

local helpers
local function slow()
  if helpers then return helpers end
  local h = {}
  local fmts = FMTW
  h.fmts = fmts
  -- The counts of a compact window as an array: counts[n + 1] is bucket cur, counts[1]
  -- the oldest still overlapping the window.
  function h.counts(r, n)
    if r[12] then return r[12] end
    local counts = {}
    for j = 1, n + 1 do counts[j] = 0 end
    local w, m = r[9], r[7]
    if m > 0 then
      local fmt, base = fmts[w], n + 1 - r[8] - m
      for j = 1, m do counts[base + j] = upk(fmt, r[11], r[10] + (j - 1) * w) end
    end
    r[12] = counts
    return counts
  end
  -- Smallest k >= 1 such that dropping the k oldest buckets leaves total - dropped <=
  -- target; the ms (rounded up) until bucket cur + k starts (when those k have left), or -1.
  function h.wait(r, n, total, target, bucket_us)
    if total <= target then return 0 end
    local counts = h.counts(r, n)
    local dropped = 0
    for k = 1, n + 1 do
      dropped = dropped + counts[k]
      if total - dropped <= target then
        local us = (r[6] + k) * bucket_us - now_us
        if us < 0 then us = 0 end
        return ceil(us / 1000)
      end
    end
    return -1
  end
  -- All counts written again, at the width the largest needs (a count outgrew its width).
  function h.rewrite(r, n, units, total)
    local counts = h.counts(r, n)
    counts[n + 1] = counts[n + 1] + units
    local first, top = n + 1, 0
    for j = n + 1, 1, -1 do
      if counts[j] > 0 then first = j end
      if counts[j] > top then top = counts[j] end
    end
    local w = 4
    if top <= 255 then w = 1 elseif top <= 65535 then w = 2 end
    local parts = { pk('<BI4I4', 128 + w, r[6] % WRAP, total) }
    for j = first, n + 1 do parts[#parts + 1] = pk(fmts[w], counts[j]) end
    r[12] = nil
    return table.concat(parts), w
  end
  -- The (rank + 1)-th oldest member of an exact log in the window leaves after this many ms.
  function h.leave_after(key, from, window, rank)
    local m = redis.call('ZRANGEBYSCORE', key, '(' .. from, '+inf', 'WITHSCORES', 'LIMIT', rank, 1)
    return tonumber(m[2]) + window - now
  end
  -- Adds n members scored now to an exact log (`prefix` .. 1..n), in batches: unpack has a
  -- stack limit.
  function h.add_members(key, n, prefix)
    local args = {}
    for j = 1, n do
      args[#args + 1] = now
      args[#args + 1] = prefix .. j
      if #args >= 200 then
        redis.call('ZADD', key, unpack(args))
        args = {}
      end
    end
    if #args > 0 then redis.call('ZADD', key, unpack(args)) end
  end
  helpers = h
  return h
end

-- A compact counter at this call's bucket `cur`: the state table (see above; `r`, filled in
-- place, so that a call reuses its tables) with the counts that left the window since the
-- last write subtracted (O(buckets passed)).
local function win_state(r, raw, cur, n)
  r[12], r.blocked = nil, nil
  if raw and #raw >= 9 then
    local tag, base, total = upk('<BI4I4', raw)
    local w = tag - 128
    if (w == 1 or w == 2 or w == 4) and (#raw - 9) % w == 0 then
      local shift = (cur % WRAP - base) % WRAP
      if shift >= WRAP / 2 then
        -- The newest bucket is ahead of this node's clock: the counter was written by a
        -- node whose clock is ahead (a failover). Never read that as a wrap (it would wipe
        -- the counter and restore the quota): stay on the stored bucket, as the in-process
        -- store never lets a counter's time go back.
        cur = cur + (WRAP - shift)
        shift = 0
      end
      if shift <= n then
        local m = (#raw - 9) / w
        local off = 10
        -- Stored counts at buckets older than cur - n have left the window.
        local d = m - (n + 1 - shift)
        if d > 0 then
          local fmt = FMTW[w]
          for j = 0, d - 1 do total = total - upk(fmt, raw, off + j * w) end
          off = off + d * w
          m = m - d
        end
        r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11] =
          3, total, false, 0, 0, cur, m, shift, w, off, raw
        return r
      end
    end
  end
  r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11] =
    3, 0, false, 0, 0, cur, 0, 0, 0, 10, ''
  return r
end

-- Adds `units` to bucket cur and writes the counter with its TTL: after (n + 1) buckets
-- every count has left the window and the key may go. The state then describes `out`.
local function win_charge(key, r, units, limit, bucket_us, n)
  local total = r[2] + units
  local w, m, off, raw = r[9], r[7], r[10], r[11]
  local fmt = FMTW[w]
  local out
  if m > 0 and r[8] == 0 then
    local at = off + (m - 1) * w
    local v = upk(fmt, raw, at) + units
    if v < CAPW[w] then
      out = pk(WHOLE[w], 128 + w, r[6] % WRAP, total, raw:sub(off, at - 1), v)
      if off == 10 then
        -- Same bucket as the last write and nothing left the window: the key's deadline
        -- has not moved, so the counter is rewritten in place (SETRANGE keeps the TTL,
        -- and costs Redis less than a SET with PX).
        redis.call('SETRANGE', key, '0', out)
        r[2], r[11] = total, out
        if r[12] then r[12][n + 1] = r[12][n + 1] + units end
        return
      end
    end
  elseif m > 0 then
    if units < CAPW[w] then
      out = pk(WHOLE[w], 128 + w, r[6] % WRAP, total,
        raw:sub(off, off + m * w - 1) .. string.rep('\0', (r[8] - 1) * w), units)
    end
  else
    -- As narrow as the count allows: wider when a count outgrows it (rare: slow().rewrite).
    w, fmt = 4, FMT4
    if units <= 255 then w, fmt = 1, FMT1 elseif units <= 65535 then w, fmt = 2, FMT2 end
    out = pk('<BI4I4', 128 + w, r[6] % WRAP, total) .. pk(fmt, units)
  end
  if out then
    if r[12] then r[12][n + 1] = r[12][n + 1] + units end
  else
    out, w = slow().rewrite(r, n, units, total)
  end
  redis.call('SET', key, out, 'PX', ceil((n + 1) * bucket_us / 1000))
  r[2], r[7], r[8], r[9], r[10], r[11] = total, (#out - 9) / w, 0, w, 10, out
end

-- The values of the call's keys, fetched in one MGET (a key holding another type, such as
-- an exact log's sorted set, reads as false) and kept up to date as requests write them:
-- key -> value, or false.
local cache = {}
local nreq = ARGV[1] + 0
-- The call's distinct rules, parsed once: algo, limit, window, bucket, nbuckets, shadow,
-- block, longest block. (Numbers are read with `+ 0`: one conversion, where tonumber
-- takes two.)
-- (Tables made with four slots: most calls have at most four distinct rules, and a table
-- that grows is reallocated at each power of two.)
local SA, SL, SW, SB = { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 }
local SN, SS, SK, SKM = { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 }
local SCUR, SCURW, SRESET, STTL = { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 }
local nrd = ARGV[2] + 0
local first = 3 + nrd * 8
local anyblock, anylog = false, false
for j = 1, nrd do
  local b = 3 + (j - 1) * 8
  SA[j], SL[j], SW[j] = ARGV[b], ARGV[b + 1] + 0, ARGV[b + 2] + 0
  SB[j], SN[j], SS[j] = ARGV[b + 3] + 0, ARGV[b + 4] + 0, ARGV[b + 5] == '1'
  SK[j], SKM[j] = ARGV[b + 6] + 0, ARGV[b + 7] + 0
  if SK[j] > 0 then anyblock = true end
  if SA[j] == 'log' then anylog = true end
  -- A compact rule's bucket now, the time until a counter charged in it has emptied, and
  -- the TTL a counter gets when its newest bucket moves.
  if SA[j] == 'win' then
    SCUR[j] = floor(now_us / SB[j])
    SCURW[j] = SCUR[j] % WRAP
    SRESET[j] = ceil(((SCUR[j] + SN[j] + 1) * SB[j] - now_us) / 1000)
    STTL[j] = ceil((SN[j] + 1) * SB[j] / 1000)
  end
end
-- The rule numbers of the request being decided (rj[i]: rule i's number in the list above),
-- one table reused by every request of the call.
local rj = { 0, 0, 0, 0 }
-- The compact state tables of a request's rules (by position), reused by the next request:
-- a request's tables are not read once it is answered.
local pool = {}
-- The block keys of a request whose counters start at KEYS[k + 1] (rules in rj), when a
-- rule of the call blocks: rule position -> key, and how many there are.
local function block_keys(nrules, k)
  local bk, nb = {}, 0
  for i = 1, nrules do
    if SK[rj[i]] > 0 then
      nb = nb + 1
      bk[i] = KEYS[k + nrules + nb]
    end
  end
  return bk, nb
end
if #KEYS > 0 then
  local got = redis.call('MGET', unpack(KEYS))
  for j = 1, #KEYS do cache[KEYS[j]] = got[j] end
end
local function cached(key)
  local v = cache[key]
  if v == false then return nil end
  return v
end

local out, no = {}, 0

-- The common check, inline: mode "check", no charge-backs, no blocking rule, every rule
-- compact and leaving at least one unit after this request's cost (so retry and free1
-- are 0 and no bucket list is scanned). Then it charges every rule, answers, and returns
-- true. Anything else returns false before anything is written, and the general path
-- below decides the request; both compute the same answer (tests/ratelimit_mirror.rs runs
-- sequences that take either).
local FS, FI, FT = { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 }
local function fast_check(nrules, cost, k)
  for i = 1, nrules do
    local j = rj[i]
    if SA[j] ~= 'win' then return false end
    local raw, n, w = cache[KEYS[k + i]], SN[j], 1
    local total, s, inplace = cost, nil, false
    if raw then
      local len = #raw
      if len < 9 then return false end
      local tag, base, t = upk('<BI4I4', raw)
      w = tag - 128
      if not CAPW[w] or (len - 9) % w ~= 0 then return false end
      local m = (len - 9) / w
      local shift = (SCURW[j] - base) % WRAP
      -- The newest bucket ahead of this clock (a failover): the general path's case.
      if shift >= WRAP / 2 then return false end
      if shift == 0 then
        -- Same bucket: the newest count and the total grow in place.
        if m == 0 or m > n + 1 then return false end
        local at = 10 + (m - 1) * w
        local v = upk(FMTW[w], raw, at) + cost
        if v >= CAPW[w] then return false end
        total = t + cost
        s, inplace = pk(WHOLE[w], tag, base, total, sub(raw, 10, at - 1), v), true
      elseif shift <= n then
        -- A later bucket: the counts that left the window dropped, empty buckets between.
        if m == 0 or cost >= CAPW[w] then return false end
        local off, d = 10, m - (n + 1 - shift)
        if d > 0 then
          local fmt = FMTW[w]
          for q = 0, d - 1 do t = t - upk(fmt, raw, off + q * w) end
          off = off + d * w
        end
        total = t + cost
        local mid = sub(raw, off)
        if shift > 1 then mid = mid .. string.rep('\0', (shift - 1) * w) end
        s = pk(WHOLE[w], tag, SCURW[j], total, mid, cost)
      else
        raw = nil
      end
    end
    -- (cost > limit: only a corrupt total lets it fit; the general path answers retry -1.)
    if total > SL[j] - 1 or cost > SL[j] then return false end
    if not raw then
      -- A new counter (or one whose every count has left the window).
      w = 4
      if cost <= 255 then w = 1 elseif cost <= 65535 then w = 2 end
      s = pk(WHOLE[w], 128 + w, SCURW[j], cost, '', cost)
    end
    FS[i], FI[i], FT[i] = s, inplace, total
  end
  -- The short answer (all_allowed 3): per rule only remaining and reset_ms (allowed 1,
  -- retry_ms 0, free1_ms 0 implied).
  out[no + 1], out[no + 2] = 3, now
  no = no + 2
  for i = 1, nrules do
    local j, key, s = rj[i], KEYS[k + i], FS[i]
    if FI[i] then
      redis.call('SETRANGE', key, '0', s)
    else
      redis.call('SET', key, s, 'PX', STTL[j])
    end
    cache[key] = s
    out[no + 1], out[no + 2] = SL[j] - FT[i], SRESET[j]
    no = no + 2
  end
  return true
end

local a, k = first, 0
local nrules, mode, cost, nonce, ncharges, cbase = 0, 'check', 1, '', 0, 0
for _ = 1, nreq do
  local step = 1
  if ARGV[a] == '=' then
    -- The previous request again (see the header): its rules, mode and cost stay.
    ncharges = 0
  else
    nrules, mode, cost, nonce = ARGV[a] + 0, ARGV[a + 1], ARGV[a + 2] + 0, ARGV[a + 3]
    ncharges = ARGV[a + 4] + 0
    local sb = a + 5
    cbase = sb + nrules
    for i = 1, nrules do rj[i] = ARGV[sb + i - 1] + 0 end
    step = 5 + nrules + ncharges
  end
  local leasing = (mode == 'lease')
  local checking = (mode == 'check' or leasing)
  local bkeys, nblock = false, 0
  if anyblock then bkeys, nblock = block_keys(nrules, k) end
  if not (mode == 'check' and ncharges == 0 and nblock == 0 and fast_check(nrules, cost, k)) then
  local st = {}

  -- An exact log's counter must be a sorted set (or absent): a key left in another type by
  -- an algorithm change would fail the script half-way, after earlier requests of the call
  -- wrote, and lose their answers. Such a request is answered -1 and writes nothing.
  local broken = false
  if anylog then
    for i = 1, nrules do
      if SA[rj[i]] == 'log' then
        local ty = redis.call('TYPE', KEYS[k + i])['ok']
        if ty ~= 'zset' and ty ~= 'none' then broken = true end
      end
    end
  end
  if broken then
    out[no + 1], out[no + 2] = -1, now
    no = no + 2
    local zeros = nrules * 5
    if leasing then zeros = zeros + nrules end
    for _ = 1, zeros do
      no = no + 1
      out[no] = 0
    end
  else
    if mode == 'refund' and ncharges > 0 then
      -- Units taken back from the bucket that held time `nonce` (see the header).
      local at_us = tonumber(nonce) * 1000
      for i = 1, nrules do
        local c = tonumber(ARGV[cbase + i - 1]) or 0
        local j = rj[i]
        if c > 0 and SA[j] == 'win' then
          local bucket_us, n = SB[j], SN[j]
          local key = KEYS[k + i]
          local r = win_state({}, cached(key), SCUR[j], n)
          local back = r[6] - floor(at_us / bucket_us)
          if r[7] > 0 and back == 0 and r[8] == 0 and r[10] == 10 then
            -- The reservation's bucket is the newest stored one and nothing has left the
            -- window since: the total and that count are rewritten in place (as a check
            -- in the same bucket does; SETRANGE keeps the TTL).
            local w, raw = r[9], r[11]
            local fmt = FMTW[w]
            local at = 10 + (r[7] - 1) * w
            local v = upk(fmt, raw, at)
            if c > v then c = v end
            if c > 0 then
              local tail = pk('<I4', r[2] - c) .. raw:sub(10, at - 1) .. pk(fmt, v - c)
              redis.call('SETRANGE', key, 5, tail)
              cache[key] = raw:sub(1, 5) .. tail
            end
          elseif r[7] > 0 and back >= 0 and back <= n then
            local counts = slow().counts(r, n)
            local at = n + 1 - back
            if c > counts[at] then c = counts[at] end
            if c > 0 then
              counts[at] = counts[at] - c
              local v = slow().rewrite(r, n, 0, r[2] - c)
              redis.call('SET', key, v, 'PX', ceil((n + 1) * bucket_us / 1000))
              cache[key] = v
            end
          end
        end
      end
    elseif mode ~= 'lease' and ncharges > 0 then
      -- Charge-back of units admitted elsewhere while Redis was unusable (see the header).
      for i = 1, nrules do
        local c = tonumber(ARGV[cbase + i - 1]) or 0
        local j = rj[i]
        local algo, limit = SA[j], SL[j]
        local window, bucket_us, n = SW[j], SB[j], SN[j]
        local key = KEYS[k + i]
        if c > limit then c = limit end
        if c > 0 then
          if algo == 'log' then
            redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
            slow().add_members(key, c, nonce .. ':c')
            local card = redis.call('ZCARD', key)
            if card > limit then redis.call('ZREMRANGEBYRANK', key, 0, card - limit - 1) end
            redis.call('PEXPIRE', key, window)
          elseif algo == 'gcra' then
            local tat = tonumber(cached(key) or '') or now_us
            if tat < now_us then tat = now_us end
            -- Never beyond a full bucket: a charge delays no one longer than a full burst would.
            tat = math.min(tat + c * bucket_us, now_us + limit * bucket_us)
            local ttl = ceil((tat - now_us) / 1000)
            if ttl < 1 then ttl = 1 end
            local v = string.format('%.0f', tat)
            redis.call('SET', key, v, 'PX', ttl)
            cache[key] = v
          else
            local r = win_state({}, cached(key), SCUR[j], n)
            -- A window never holds more than twice its limit (nor more than a 4-byte
            -- count): the charge stops there.
            local room = math.min(2 * limit, 4294967295) - r[2]
            if c > room then c = room end
            if c > 0 then
              win_charge(key, r, c, limit, bucket_us, n)
              cache[key] = r[11]
            end
          end
        end
      end
    end

    local all_allowed = 1
    for i = 1, nrules do
      local j = rj[i]
      local algo, limit = SA[j], SL[j]
      local key = KEYS[k + i]
      local r
      -- A block in force: denied without counting (positional: [1] 4, [2] count = limit,
      -- [3] allowed, [4] retry, [5] free1, [6] reset).
      local until_ms = bkeys and bkeys[i] and tonumber(string.match(cached(bkeys[i]) or '', '^(%d+)'))
      if until_ms and until_ms > now then
        -- Never more than the longest block, were this node's clock behind the one that
        -- wrote it (a failover).
        local left = math.min(until_ms - now, SKM[j])
        r = { 4, limit, false, left, left, left }
      elseif algo == 'win' then
        local bucket_us, n = SB[j], SN[j]
        r = pool[i]
        if not r then
          r = {}
          pool[i] = r
        end
        win_state(r, cache[key] or nil, SCUR[j], n)
        local total = r[2]
        r[3] = (total + cost <= limit)
        if cost > limit then
          r[4] = -1
        elseif total + cost > limit then
          r[4] = slow().wait(r, n, total, limit - cost, bucket_us)
        end
        if total > limit - 1 then
          local f = slow().wait(r, n, total, limit - 1, bucket_us)
          if f > 0 then r[5] = f end
        end
      elseif algo == 'gcra' then
        local T = SB[j]
        local tat = tonumber(cached(key) or '') or now_us
        if tat < now_us then tat = now_us end
        local cap = limit * T
        local ahead = tat - now_us
        local retry = -1
        if cost <= limit then
          retry = ahead + cost * T - cap
          if retry < 0 then retry = 0 end
          retry = ceil(retry / 1000)
        end
        local free1 = ahead + T - cap
        if free1 < 0 then free1 = 0 end
        r = { 2, ceil(ahead / T), ahead + cost * T <= cap, retry, ceil(free1 / 1000), tat, ceil(ahead / 1000) }
      else
        local window = SW[j]
        local from = now - window
        local count
        if checking then
          -- Drop what left the window now (a check may write), so the set's size is the count.
          redis.call('ZREMRANGEBYSCORE', key, '-inf', from)
          count = redis.call('ZCARD', key)
        else
          count = redis.call('ZCOUNT', key, '(' .. from, '+inf')
        end
        r = { 1, count, count + cost <= limit, 0, 0, from }
        if cost > limit then
          r[4] = -1
        elseif not r[3] then
          r[4] = slow().leave_after(key, from, window, count + cost - limit - 1)
        end
        if count >= limit then r[5] = slow().leave_after(key, from, window, count - limit) end
      end
      if not r[3] and not SS[j] then all_allowed = 0 end
      st[i] = r
    end

    local commit = (checking and all_allowed == 1)

    -- A refused check starts a block on each blocking rule that denied it (not already
    -- blocked), doubled if the identity's previous block ended less than block_max ago.
    if bkeys and checking and all_allowed == 0 then
      for i = 1, nrules do
        local r, bk = st[i], bkeys[i]
        if bk and r[1] ~= 4 and not r[3] then
          local j = rj[i]
          -- A repeat: the previous block ended less than block_max ago (by this clock, not
          -- the key's TTL, which may outlive it).
          local strikes = 1
          local pu, ps = string.match(cached(bk) or '', '^(%d+) (%d+)$')
          pu, ps = tonumber(pu), tonumber(ps)
          if pu and ps and pu + SKM[j] > now then strikes = ps + 1 end
          local dur = SKM[j]
          if strikes <= 62 then
            local d = SK[j] * 2 ^ (strikes - 1)
            if d < dur then dur = d end
          end
          local v = string.format('%.0f %d', now + dur, strikes)
          redis.call('SET', bk, v, 'PX', string.format('%.0f', dur + SKM[j]))
          cache[bk] = v
          if r[4] >= 0 and r[4] < dur then r[4] = dur end
          if r[5] < dur then r[5] = dur end
          r.blocked = true
        end
      end
    end

    out[no + 1], out[no + 2] = all_allowed, now
    no = no + 2
    local reserved = leasing and {}
    for i = 1, nrules do
      local j = rj[i]
      local limit = SL[j]
      local r = st[i]
      local key = KEYS[k + i]
      local charged = commit and r[3]
      local reset
      if r[1] == 4 then
        reset = r[6]
      elseif r[1] == 3 then
        local bucket_us, n = SB[j], SN[j]
        if charged then
          -- Mode "lease": up to the asked units more, at most what is left after the cost.
          local extra = 0
          if leasing and ncharges > 0 then
            extra = tonumber(ARGV[cbase + i - 1]) or 0
            local room = limit - r[2] - cost
            if extra > room then extra = room end
            if extra < 0 then extra = 0 end
          end
          if reserved then reserved[i] = extra end
          win_charge(key, r, cost + extra, limit, bucket_us, n)
          cache[key] = r[11]
          reset = ceil(((r[6] + n + 1) * bucket_us - now_us) / 1000)
          if r[2] >= limit and r[5] == 0 then
            -- This request used the last unit: the next one frees when the oldest leaves.
            r[5] = slow().wait(r, n, r[2], limit - 1, bucket_us)
          end
        else
          reset = slow().wait(r, n, r[2], 0, bucket_us)
        end
      elseif r[1] == 2 then
        reset = r[7]
        if charged then
          local T = SB[j]
          local tat = r[6] + cost * T
          local ahead = tat - now_us
          local ttl = ceil(ahead / 1000)
          if ttl < 1 then ttl = 1 end
          -- %.0f: a microsecond timestamp is past the 14 digits tostring keeps.
          local v = string.format('%.0f', tat)
          redis.call('SET', key, v, 'PX', ttl)
          cache[key] = v
          reset = ceil(ahead / 1000)
          local f = ahead + T - limit * T
          if f < 0 then f = 0 end
          r[5] = ceil(f / 1000)
          r[2] = r[2] + cost
        end
      else
        local window = SW[j]
        if charged then
          -- One member per unit of cost, added in batches (unpack has a stack limit). The set
          -- holds count + cost <= limit members now: the hard cap holds without a ZCARD.
          if cost == 1 then
            redis.call('ZADD', key, now, nonce .. ':1')
          else
            slow().add_members(key, cost, nonce .. ':')
          end
          redis.call('PEXPIRE', key, window)
          reset = window
          r[2] = r[2] + cost
          if r[2] >= limit and r[5] == 0 then
            -- This request used the last unit: the next one frees when the oldest leaves.
            r[5] = slow().leave_after(key, r[6], window, 0)
          end
        elseif r[2] == 0 then
          reset = 0
        else
          local newest = redis.call('ZREVRANGEBYSCORE', key, '+inf', '(' .. r[6], 'WITHSCORES', 'LIMIT', 0, 1)
          reset = tonumber(newest[2]) + window - now
        end
      end
      local remaining = limit - r[2]
      if remaining < 0 then remaining = 0 end
      local allowed = 0
      if r[3] then allowed = 1 elseif r[1] == 4 or r.blocked then allowed = 2 end
      out[no + 1], out[no + 2], out[no + 3], out[no + 4], out[no + 5] = allowed, remaining, reset, r[4], r[5]
      no = no + 5
    end
    if leasing then
      for i = 1, nrules do
        no = no + 1
        out[no] = reserved[i] or 0
      end
    end
  end
  end
  a, k = a + step, k + nrules + nblock
end
return out
