-- confirm.lua: a claim is committed in MySQL; promote it in Redis, or, when Redis lost
-- the booking's record, write MySQL's truth back.
--
-- Runs after the reconciler's MySQL COMMIT. Only a booking that is still pending is
-- promoted: a booking cancelled or rejected meanwhile is left as it is, so a late
-- confirm can never resurrect seats that were given back. Safe to run any number of
-- times (redelivery of an outbox entry).
--
-- Restore: Redis has no record of the booking (an eviction, a restart from older data
-- or a failover lost it after the claim), yet MySQL has it confirmed. With ARGV[3] =
-- "1" the script writes MySQL's truth: each seat becomes "booked:<bid>" whatever Redis
-- had (available: it also leaves avail; "pending:<other>": that claim is stale, MySQL
-- has the seat booked, and its own settle rejects it; "booked:<other>": stale too),
-- the pending / booked counters move with each seat so they stay exact, the record is
-- written (user, seats, status confirmed) and the user's tally counts the booking
-- again. The caller asks for a restore only while it holds the seats' rows locked FOR
-- UPDATE in MySQL and has read the booking confirmed there: without the locks, a
-- cancellation committed since (whose cancel.lua found no record and freed the seats)
-- could be undone in Redis. With "0", a missing record is only reported. Nothing is
-- restored into an event whose seats hash is gone (its keys were lost; a warm rebuilds
-- them from MySQL, tallies included).
--
-- KEYS[1]  {e:ID}:meta    hash (pending / booked counters)
-- KEYS[2]  {e:ID}:seats   hash seat -> state
-- KEYS[3]  {e:ID}:avail   zset of available seats by ordinal
-- KEYS[4]  {e:ID}:user:U  hash booking id -> seats held
-- KEYS[5]  {e:ID}:b:<bid> booking record
-- ARGV[1]  booking id (string)
-- ARGV[2]  user id U (string)
-- ARGV[3]  "1" to restore a missing record (see above), else "0"
-- ARGV[4..] the booking's seats (strings)
--
-- Reply: the booking's status afterwards: "confirmed", "cancelled", "rejected";
-- "restored" when the record was missing and has been restored (now "confirmed"); or
-- "missing" when Redis has no record of it and did not restore it (ARGV[3] is "0", or
-- the event's seats hash is gone).
--
-- Example: EVALSHA <sha> 5 {e:wc}:meta {e:wc}:seats {e:wc}:avail {e:wc}:user:alice
--            {e:wc}:b:0192... 0192... alice 0 A1 A2
--   -> "confirmed"   (A1 and A2 are now "booked:0192...")

local meta_key, seats_key, avail_key, user_key, booking_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local bid, user, restore = ARGV[1], ARGV[2], ARGV[3]
assert(bid and user and restore and #ARGV >= 4,
  'confirm.lua: booking id, user, restore flag and seats required')

local pending, booked = 'pending:' .. bid, 'booked:' .. bid

local status = redis.call('HGET', booking_key, 'status')
if not status then
  if restore ~= '1' or redis.call('EXISTS', seats_key) == 0 then
    return 'missing'
  end
  local seats, was_pending, newly_booked = {}, 0, 0
  for i = 4, #ARGV do
    local seat = ARGV[i]
    seats[#seats + 1] = seat
    local state = redis.call('HGET', seats_key, seat)
    if state and state ~= booked then
      redis.call('HSET', seats_key, seat, booked)
      if state == 'available' then
        redis.call('ZREM', avail_key, seat)
        newly_booked = newly_booked + 1
      elseif string.sub(state, 1, 8) == 'pending:' then
        was_pending = was_pending + 1
        newly_booked = newly_booked + 1
      end
      -- "booked:<other>": booked before and after; the counters do not move.
    end
  end
  redis.call('HINCRBY', meta_key, 'pending', 0 - was_pending)
  redis.call('HINCRBY', meta_key, 'booked', newly_booked)
  redis.call('HSET', booking_key, 'user', user, 'seats', cjson.encode(seats),
    'status', 'confirmed')
  redis.call('HSET', user_key, bid, #seats)
  return 'restored'
end
if status ~= 'pending' then
  return status
end

local moved = 0
for i = 4, #ARGV do
  if redis.call('HGET', seats_key, ARGV[i]) == pending then
    redis.call('HSET', seats_key, ARGV[i], booked)
    moved = moved + 1
  end
end
-- `0 - n`, not `-n`: for n = 0, Lua's -n is -0, which Redis reads as "-0" and HINCRBY refuses.
redis.call('HINCRBY', meta_key, 'pending', 0 - moved)
redis.call('HINCRBY', meta_key, 'booked', moved)
redis.call('HSET', booking_key, 'status', 'confirmed')
return 'confirmed'
