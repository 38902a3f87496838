-- confirm.lua: a booking is committed in MySQL, as confirmed or as held; Redis follows,
-- or, when Redis lost the booking's record, takes MySQL's truth back.
--
-- Runs after the MySQL COMMIT that made the booking `confirmed` (the reconciler's
-- persist on an event without holds, or a checkout) or `held` (the reconciler's persist
-- on an event with holds). A booking only ever moves forward: pending -> held,
-- pending -> confirmed, held -> confirmed. A booking already at or past the target, or
-- cancelled, rejected or expired meanwhile, is left as it is, so a late or repeated
-- call can never resurrect seats that were given back. Safe to run any number of
-- times (redelivery of an outbox entry, a repeated checkout).
--
-- A held booking's seats are "held:<bid>", counted in meta's `held`, and the booking
-- sits in the event's holds zset scored by its deadline (the expirer reads it); its
-- record carries `expires_ms`.
--
-- Restore: Redis has no record of the booking (an eviction, a restart from older data
-- or a failover lost it after the claim), yet MySQL has it. With ARGV[3] = "1" the
-- script writes MySQL's truth: each seat takes the target state whatever Redis had
-- (available: it also leaves avail; "pending:<other>": that claim is stale, MySQL has
-- the seat, and its own settle rejects it; "booked:<other>" / "held:<other>": stale
-- too), the counters move with each seat so they stay exact, the record is written
-- (user, seats, status) and the user's tally counts the booking again. The caller asks
-- for a restore only while it holds the seats' rows locked FOR UPDATE in MySQL and has
-- read the booking there: without the locks, a cancellation committed since (whose
-- cancel.lua found no record and freed the seats) could be undone in Redis. With "0",
-- a missing record is only reported. Nothing is restored into an event whose seats
-- hash is gone (its keys were lost; a warm rebuilds them from MySQL, tallies included).
--
-- KEYS[1]  {e:ID}:meta    hash (pending / held / booked counters)
-- KEYS[2]  {e:ID}:seats   hash seat -> state
-- KEYS[3]  {e:ID}:avail   zset of available seats by ordinal
-- KEYS[4]  {e:ID}:user:U  hash booking id -> seats held
-- KEYS[5]  {e:ID}:b:<bid> booking record
-- KEYS[6]  {e:ID}:holds   zset: held booking id -> deadline (ms since the epoch)
-- ARGV[1]  booking id (string)
-- ARGV[2]  user id U (string)
-- ARGV[3]  "1" to restore a missing record (see above), else "0"
-- ARGV[4]  the target status: "confirmed" or "held"
-- ARGV[5]  for "held": the deadline, ms since the epoch ("" for "confirmed")
-- ARGV[6..] the booking's seats (strings)
--
-- Reply: the booking's status afterwards: "confirmed", "held", "cancelled",
-- "rejected", "expired" (or "pending" when asked to hold a booking that is not pending);
-- "restored" when the record was missing and has been restored (now the target); or
-- "missing" when Redis has no record of it and did not restore it (ARGV[3] is "0", or
-- the event's seats hash is gone).
--
-- Example: EVALSHA <sha> 6 {e:wc}:meta {e:wc}:seats {e:wc}:avail {e:wc}:user:alice
--            {e:wc}:b:0192... {e:wc}:holds 0192... alice 0 confirmed "" A1 A2
--   -> "confirmed"   (A1 and A2 are now "booked:0192...")

local meta_key, seats_key, avail_key, user_key, booking_key, holds_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local bid, user, restore, target, deadline = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
assert(bid and user and restore and deadline and #ARGV >= 6,
  'confirm.lua: booking id, user, restore flag, target, deadline and seats required')
assert(target == 'confirmed' or target == 'held', 'confirm.lua: target confirmed or held')
assert(target == 'confirmed' or tonumber(deadline), 'confirm.lua: a hold needs its deadline')

local prefix = target == 'held' and 'held:' or 'booked:'
local counter = target == 'held' and 'held' or 'booked'
local wanted = prefix .. bid

-- The target's side effects on the record and the holds zset.
local function mark_record()
  if target == 'held' then
    redis.call('HSET', booking_key, 'status', 'held', 'expires_ms', deadline)
    redis.call('ZADD', holds_key, deadline, bid)
  else
    redis.call('HSET', booking_key, 'status', 'confirmed')
    redis.call('ZREM', holds_key, bid)
  end
end

local status = redis.call('HGET', booking_key, 'status')
if not status then
  if restore ~= '1' or redis.call('EXISTS', seats_key) == 0 then
    return 'missing'
  end
  local seats = {}
  local moved = {pending = 0, held = 0, booked = 0}
  local newly = 0
  for i = 6, #ARGV do
    local seat = ARGV[i]
    seats[#seats + 1] = seat
    local state = redis.call('HGET', seats_key, seat)
    if state and state ~= wanted then
      redis.call('HSET', seats_key, seat, wanted)
      newly = newly + 1
      if state == 'available' then
        redis.call('ZREM', avail_key, seat)
      else
        local kind = string.match(state, '^(%a+):')
        if kind == 'pending' or kind == 'held' or kind == 'booked' then
          moved[kind] = moved[kind] + 1
        end
      end
    end
  end
  -- `0 - n`, not `-n`: for n = 0, Lua's -n is -0, which Redis reads as "-0" and
  -- HINCRBY refuses.
  for kind, n in pairs(moved) do
    redis.call('HINCRBY', meta_key, kind, 0 - n)
  end
  redis.call('HINCRBY', meta_key, counter, newly)
  redis.call('HSET', booking_key, 'user', user, 'seats', cjson.encode(seats))
  mark_record()
  redis.call('HSET', user_key, bid, #seats)
  return 'restored'
end

local from
if status == 'pending' then
  from = 'pending'
elseif status == 'held' and target == 'confirmed' then
  from = 'held'
else
  return status
end

local current = from .. ':' .. bid
local moved = 0
for i = 6, #ARGV do
  if redis.call('HGET', seats_key, ARGV[i]) == current then
    redis.call('HSET', seats_key, ARGV[i], wanted)
    moved = moved + 1
  end
end
redis.call('HINCRBY', meta_key, from, 0 - moved)
redis.call('HINCRBY', meta_key, counter, moved)
mark_record()
return target
