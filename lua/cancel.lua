-- cancel.lua: give a booking's seats back, after MySQL has recorded the cancellation.
--
-- The API commits the cancellation in MySQL first and runs this second, so Redis never
-- offers a seat that MySQL still has booked. Seats still held by the booking (pending
-- or booked) become available; anything else is left alone. Works without a booking
-- record too (Redis lost it and warm rebuilt the seats from MySQL), which is why the
-- seats come as arguments. Safe to run again. A freed seat goes back into avail at its
-- ordinal, read from the booking record (see ordinal_of).
--
-- KEYS[1]  {e:ID}:meta    hash (pending / booked counters)
-- KEYS[2]  {e:ID}:seats   hash seat -> state
-- KEYS[3]  {e:ID}:avail   zset of available seats by ordinal
-- KEYS[4]  {e:ID}:order   list of seat ids in ordinal order (fallback, see ordinal_of)
-- KEYS[5]  {e:ID}:user:U  hash booking id -> seats held
-- KEYS[6]  {e:ID}:b:<bid> booking record
-- ARGV[1]  booking id (string)
-- ARGV[2..] the booking's seats (strings)
--
-- Reply: "cancelled", or "rejected" (a rejected booking is never cancelled; nothing
-- changes), or "missing" (no record; seats freed all the same).
--
-- Example: EVALSHA <sha> 6 {e:wc}:meta {e:wc}:seats {e:wc}:avail {e:wc}:order
--            {e:wc}:user:alice {e:wc}:b:0192... 0192... A1 A2
--   -> "cancelled"

local meta_key, seats_key, avail_key, order_key, user_key, booking_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local bid = ARGV[1]
assert(bid and #ARGV >= 2, 'cancel.lua: booking id and seats required')

local status = redis.call('HGET', booking_key, 'status')
if status == 'rejected' then
  return 'rejected'
end

-- ordinal_of(booking_key, order_key): lua/lib/ordinals.lua, which src/claims/scripts.rs
-- puts in front of this script.

local ordinal = ordinal_of(booking_key, order_key)
local pending, booked = 'pending:' .. bid, 'booked:' .. bid
local was_pending, was_booked = 0, 0
for i = 2, #ARGV do
  local seat = ARGV[i]
  local state = redis.call('HGET', seats_key, seat)
  if state == pending or state == booked then
    redis.call('HSET', seats_key, seat, 'available')
    local ord = ordinal(seat)
    if ord then
      redis.call('ZADD', avail_key, ord, seat)
    end
    if state == pending then was_pending = was_pending + 1 else was_booked = was_booked + 1 end
  end
end
-- `0 - n`, not `-n`: for n = 0, Lua's -n is -0, which Redis reads as "-0" and HINCRBY refuses.
redis.call('HINCRBY', meta_key, 'pending', 0 - was_pending)
redis.call('HINCRBY', meta_key, 'booked', 0 - was_booked)
redis.call('HDEL', user_key, bid)
if not status then
  return 'missing'
end
redis.call('HSET', booking_key, 'status', 'cancelled')
return 'cancelled'
