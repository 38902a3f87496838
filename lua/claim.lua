-- claim.lua: claim seats for one user, atomically, and append the claim to the outbox.
--
-- This is the whole hot path of seatgate. Because Redis runs a script without
-- interleaving any other command, the order in which claim scripts run *is* the
-- first-come-first-served order, and the seat states, the booking record, the
-- per-user tally, the idempotency record and the outbox entry change together or not
-- at all. The outbox entry is what makes an acknowledged claim impossible to forget:
-- there is no moment at which a client holds a 202 and the reconciler has nothing to do.
--
-- KEYS[1]  {e:ID}:meta     hash: on_sale ("1"), limit, hold (seconds; 0 or absent: no
--                          holds), pending, held, booked, ...
-- KEYS[2]  {e:ID}:seats    hash: seat -> "available" | "pending:<bid>" | "booked:<bid>"
-- KEYS[3]  {e:ID}:avail    zset: available seats scored by ordinal
-- KEYS[4]  {e:ID}:user:U   hash: booking id -> seats it holds (pending or confirmed)
-- KEYS[5]  {e:ID}:outbox   stream read by the reconciler
-- KEYS[6]  {e:ID}:b:<bid>  hash: the new booking record (user, seats as JSON, ords: the
--                          seats' ordinals comma-separated in the same order, status,
--                          created_ms, and expires_ms on an event with holds)
-- KEYS[7]  {e:ID}:rate:U   string: the user's claim rate state (GCRA theoretical arrival
--                          time, ms since the epoch), with a PEXPIRE; unused at rate 0
-- KEYS[8]  {e:ID}:mark     string: on a Redis Cluster, the mark of the primary the event
--                          was verified on (mark.lua); unused when ARGV[10] is ""
-- KEYS[9]  {e:ID}:idem:..  (optional) idempotency record for (user, key)
--
-- ARGV[1]  booking id (string, UUID v7, made by the caller)
-- ARGV[2]  user id (string)
-- ARGV[3]  now, milliseconds since the epoch (integer; also the rate limit's clock)
-- ARGV[4]  request fingerprint (string; ignored without KEYS[9])
-- ARGV[5]  idempotency record TTL in seconds (integer)
-- ARGV[6]  "seats" or "quantity"
-- ARGV[7]  quantity (integer; "0" in seats mode)
-- ARGV[8]  claims per second one user may make on average in this event (number;
--          "0": no limit)
-- ARGV[9]  claims one user may make in a burst (integer >= 1)
-- ARGV[10] the mark KEYS[8] must hold ("": no check, on one node)
-- ARGV[11..] seat ids (seats mode only)
--
-- Reply, a flat array whose first element names the outcome:
--   {"pending", bid, seat...}      claimed; the seats are now "pending:<bid>"
--   {"pending_until", bid, expires_ms, seat...}
--                                  the same on an event with holds: once persisted,
--                                  the booking is held until expires_ms (the claim's
--                                  time + the event's hold)
--   {"unavailable", seat...}       the requested seats that are taken
--   {"sold_out"}                   fewer free seats than the quantity
--   {"limit", limit}               pending + confirmed seats would exceed the limit
--   {"unknown", seat...}           seats that do not exist in the event
--   {"not_found"}                  no such event, or not on sale (not recorded)
--   {"reused"}                     same idempotency key, other request (not recorded)
--   {"rate_limited", retry_ms}     the user claims too fast: retry in retry_ms (> 0)
--                                  milliseconds (not recorded; writes nothing)
--   {"fenced"}                     on a cluster: this node is not the primary the event
--                                  was verified on (writes nothing)
--   {"replay", <one of the recorded replies above>[, answered]}
--                                  answered: the status code the first answer had
--                                  when it was not the reply's own (answered.lua)
--
-- Example: EVALSHA <sha> 9 {e:wc}:meta {e:wc}:seats {e:wc}:avail {e:wc}:user:alice
--            {e:wc}:outbox {e:wc}:b:0192... {e:wc}:rate:alice {e:wc}:mark
--            {e:wc}:idem:5:alice:k1
--            0192... alice 1767225600000 9f86d0... 86400 seats 0 5 10 "" A1 A2
--   -> {"pending", "0192...", "A1", "A2"}   (a second identical call -> {"replay", {...}})

local meta_key, seats_key, avail_key, user_key, outbox_key, booking_key, rate_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local mark_key, idem_key = KEYS[8], KEYS[9]
local bid, user, now, fp, idem_ttl, mode =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local rate, burst = tonumber(ARGV[8]), tonumber(ARGV[9])
local mark = ARGV[10]
assert(bid and user and now and mode and rate_key and mark_key and mark,
  'claim.lua: missing arguments')
assert(mode == 'seats' or mode == 'quantity', 'claim.lua: mode must be seats or quantity')
assert(rate and rate >= 0 and burst and burst >= 1, 'claim.lua: bad rate or burst')

-- 0. On a cluster, only on the primary the event was verified on (see mark.lua).
if mark ~= '' and redis.call('GET', mark_key) ~= mark then
  return {'fenced'}
end

-- 1. Idempotency: the same (user, key) answers what it answered the first time.
if idem_key then
  local rec = redis.call('HMGET', idem_key, 'fp', 'reply', 'answered')
  if rec[1] then
    if rec[1] ~= fp then
      return {'reused'}
    end
    if rec[3] then
      return {'replay', cjson.decode(rec[2]), tonumber(rec[3])}
    end
    return {'replay', cjson.decode(rec[2])}
  end
end

-- The rate limit's new state (the user's next theoretical arrival time, ms), set by
-- step 3 when the claim is admitted; nil at rate 0.
local rate_tat

-- Recorded outcomes are kept for idem_ttl seconds so that retries get the same answer.
-- Every outcome recorded is a claim decided, so this is also where the claim spends its
-- place in the user's rate (see step 3 for why here and not there).
local function answer(reply)
  if rate_tat then
    -- Expires when the user has the whole burst back: an idle user costs no memory.
    redis.call('SET', rate_key, string.format('%.17g', rate_tat),
      'PX', math.max(1, math.ceil(rate_tat - tonumber(now))))
  end
  if idem_key then
    redis.call('HSET', idem_key, 'fp', fp, 'reply', cjson.encode(reply))
    redis.call('EXPIRE', idem_key, idem_ttl)
  end
  return reply
end

-- 2. The event must be on sale (warmed).
local meta = redis.call('HMGET', meta_key, 'on_sale', 'limit', 'hold')
if meta[1] ~= '1' then
  return {'not_found'}
end
local limit = tonumber(meta[2])
local hold = tonumber(meta[3] or '0') or 0

-- 3. Per-user claim rate, a GCRA: `rate` claims per second on average, bursts of
--    `burst`. The state is one instant per (event, user), the theoretical arrival time
--    (TAT) of the user's next claim; a claim is admitted while the TAT is at most
--    (burst - 1) intervals ahead of now, and moves it one interval on. Here, after the
--    replay (a retry with the same key is never limited and costs nothing) and the
--    on-sale check (a claim on an unknown event does not count), and before anything
--    that decides the claim. On the event's slot, so it holds across every gateway;
--    `now` is the gateway's clock, so gateways' clock skew of s ms can lend a user at
--    most s x rate / 1000 claims more (or fewer).
--    A refusal writes nothing and records no idempotency answer: the same request with
--    the same key works once the wait is over.
--    The TAT is written at the end, in answer(), not here: so the first write of a
--    claim that takes seats stays the seat HSET of step 6 (see there), and a claim that
--    Redis refuses for OOM has written nothing, its place in the rate included. A claim
--    refused for seats or limit makes the SET its first write: on a full Redis it fails
--    OOM (503, nothing written) as a keyed refusal already does, instead of a 409/422.
if rate > 0 then
  local t = tonumber(now)
  local interval = 1000 / rate
  local tat = tonumber(redis.call('GET', rate_key) or '') or t
  if tat < t then
    tat = t
  end
  local early = (tat - t) - (burst - 1) * interval
  if early > 0 then
    return {'rate_limited', math.max(1, math.ceil(early))}
  end
  rate_tat = tat + interval
end

-- 4. Per-user limit: seats of this user's live bookings plus this request. Checked
--    before the seats are looked at, so the work below is bounded by the limit (<= 100).
local wanted
if mode == 'seats' then
  wanted = #ARGV - 10
  assert(wanted >= 1, 'claim.lua: no seats')
else
  wanted = tonumber(ARGV[7])
  assert(wanted and wanted >= 1, 'claim.lua: quantity must be >= 1')
end
local held = 0
for _, n in ipairs(redis.call('HVALS', user_key)) do
  held = held + tonumber(n)
end
if held + wanted > limit then
  return answer({'limit', limit})
end

-- 5. Availability, all or nothing.
local seats, ords = {}, {}
if mode == 'seats' then
  for i = 11, #ARGV do
    seats[#seats + 1] = ARGV[i]
  end
  local states = redis.call('HMGET', seats_key, unpack(seats))
  local unknown, taken = {'unknown'}, {'unavailable'}
  for i, state in ipairs(states) do
    if not state then
      unknown[#unknown + 1] = seats[i]
    elseif state ~= 'available' then
      taken[#taken + 1] = seats[i]
    end
  end
  if #unknown > 1 then
    return answer(unknown)
  end
  if #taken > 1 then
    return answer(taken)
  end
  -- The seats' ordinals go into the booking record: a rejection or cancellation puts
  -- the seats back in their place from there (Redis keeps no seat -> ordinal index).
  ords = redis.call('ZMSCORE', avail_key, unpack(seats))
else
  -- Best available: the lowest ordinals still free.
  local range = redis.call('ZRANGE', avail_key, 0, wanted - 1, 'WITHSCORES')
  if #range < 2 * wanted then
    return answer({'sold_out'})
  end
  for i = 1, #range, 2 do
    seats[#seats + 1] = range[i]
    ords[#ords + 1] = range[i + 1]
  end
end

-- 6. Mark the seats, take them off offer, write the booking, count it for the user,
--    and hand it to the reconciler through the outbox: all in this one atomic step.
--    The first write is the HSET, a command Redis refuses when it is out of memory
--    (maxmemory, noeviction): Redis checks memory before a script's first write only,
--    and lets the rest run. So a claim on a full Redis fails with OOM having written
--    nothing; were the ZREM first (it frees memory, so it is never refused), the claim
--    would go through past maxmemory. The rate limit's SET and the idempotency record
--    come after it, in answer().
local pending = 'pending:' .. bid
local hset = {}
for _, seat in ipairs(seats) do
  hset[#hset + 1] = seat
  hset[#hset + 1] = pending
end
redis.call('HSET', seats_key, unpack(hset))
if mode == 'seats' then
  redis.call('ZREM', avail_key, unpack(seats))
else
  -- The same lowest ordinals ZRANGE read: nothing ran in between.
  redis.call('ZREMRANGEBYRANK', avail_key, 0, wanted - 1)
end
redis.call('HINCRBY', meta_key, 'pending', #seats)
local seats_json = cjson.encode(seats)
-- ords[i] is seats[i]'s ordinal ("" if the seat was missing from avail, which the
-- scripts never allow to happen; the freeing scripts then look it up in the order list).
local ords_text = {}
for i = 1, #seats do
  ords_text[i] = ords[i] or ''
end
redis.call('HSET', booking_key, 'user', user, 'seats', seats_json,
  'ords', table.concat(ords_text, ','), 'status', 'pending', 'created_ms', now)
redis.call('HSET', user_key, bid, #seats)
local reply
if hold > 0 then
  -- The hold counts from the claim: the reconciler persists the booking held until
  -- then (outbox field x), and the expirer gives its seats back after.
  local expires = string.format('%d', tonumber(now) + hold * 1000)
  redis.call('HSET', booking_key, 'expires_ms', expires)
  redis.call('XADD', outbox_key, '*', 'b', bid, 'u', user, 's', seats_json, 't', now,
    'x', expires)
  reply = {'pending_until', bid, expires}
else
  redis.call('XADD', outbox_key, '*', 'b', bid, 'u', user, 's', seats_json, 't', now)
  reply = {'pending', bid}
end
for _, seat in ipairs(seats) do
  reply[#reply + 1] = seat
end
return answer(reply)
