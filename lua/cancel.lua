-- cancel.lua: give a booking's seats back, after MySQL has recorded the cancellation
-- or the expiry of its hold.
--
-- The API (a cancellation) and the expirer (a hold that ran out) commit in MySQL first
-- and run this second, so Redis never offers a seat that MySQL still holds. Seats still
-- held by the booking (pending, held or booked) become available; anything else is
-- left alone. Works without a booking record too (Redis lost it and warm rebuilt the
-- seats from MySQL), which is why the seats come as arguments. Safe to run again. A
-- freed seat goes back into avail at its ordinal, read from the booking record (see
-- ordinal_of), so it is offered again at its place in best-available order.
--
-- KEYS[1]  {e:ID}:meta    hash (pending / held / booked counters)
-- KEYS[2]  {e:ID}:seats   hash seat -> state
-- KEYS[3]  {e:ID}:avail   zset of available seats by ordinal
-- KEYS[4]  {e:ID}:order   list of seat ids in ordinal order (fallback, see ordinal_of)
-- KEYS[5]  {e:ID}:user:U  hash booking id -> seats held
-- KEYS[6]  {e:ID}:b:<bid> booking record
-- KEYS[7]  {e:ID}:holds   zset of held bookings by deadline
-- ARGV[1]  booking id (string)
-- ARGV[2]  the status MySQL recorded: "cancelled" or "expired"
-- ARGV[3..] the booking's seats (strings)
--
-- Reply: "cancelled" / "expired" (the one the booking had first, if it had one), or
-- "rejected" (a rejected booking is never
-- cancelled; nothing changes), or "confirmed" when asked to expire a confirmed booking
-- (a checkout won; nothing changes), or "missing" (no record; seats freed all the
-- same).
--
-- Example: EVALSHA <sha> 7 {e:wc}:meta {e:wc}:seats {e:wc}:avail {e:wc}:order
--            {e:wc}:user:alice {e:wc}:b:0192... {e:wc}:holds 0192... cancelled A1 A2
--   -> "cancelled"

local meta_key, seats_key, avail_key, order_key, user_key, booking_key, holds_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local bid, final = ARGV[1], ARGV[2]
assert(bid and #ARGV >= 3, 'cancel.lua: booking id, status and seats required')
assert(final == 'cancelled' or final == 'expired', 'cancel.lua: cancelled or expired')

-- Whatever follows, the booking is no longer a hold the expirer must look at.
redis.call('ZREM', holds_key, bid)
local status = redis.call('HGET', booking_key, 'status')
if status == 'rejected' then
  return 'rejected'
end
if final == 'expired' and status == 'confirmed' then
  return 'confirmed'
end
-- The first end wins: a cancelled booking is not expired afterwards, nor the reverse
-- (MySQL decided which under the seats' locks; a repeated call only finishes the job).
if status == 'cancelled' or status == 'expired' then
  final = status
end

-- ordinal_of(booking_key, order_key): lua/lib/ordinals.lua, which src/claims/scripts.rs
-- puts in front of this script.

local ordinal = ordinal_of(booking_key, order_key)
local mine = {
  ['pending:' .. bid] = 'pending',
  ['held:' .. bid] = 'held',
  ['booked:' .. bid] = 'booked',
}
local freed = {pending = 0, held = 0, booked = 0}
for i = 3, #ARGV do
  local seat = ARGV[i]
  local kind = mine[redis.call('HGET', seats_key, seat) or '']
  if kind then
    redis.call('HSET', seats_key, seat, 'available')
    local ord = ordinal(seat)
    if ord then
      redis.call('ZADD', avail_key, ord, seat)
    end
    freed[kind] = freed[kind] + 1
  end
end
-- `0 - n`, not `-n`: for n = 0, Lua's -n is -0, which Redis reads as "-0" and HINCRBY refuses.
for kind, n in pairs(freed) do
  redis.call('HINCRBY', meta_key, kind, 0 - n)
end
redis.call('HDEL', user_key, bid)
if not status then
  return 'missing'
end
redis.call('HSET', booking_key, 'status', final)
return final
