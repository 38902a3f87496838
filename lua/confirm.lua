-- confirm.lua: a claim is committed in MySQL; promote it in Redis.
--
-- Runs after the reconciler's MySQL COMMIT. Only a booking that is still pending is
-- promoted: a booking cancelled or rejected meanwhile is left as it is, so a late
-- confirm can never resurrect seats that were given back. Safe to run any number of
-- times (redelivery of an outbox entry).
--
-- KEYS[1]  {e:ID}:meta    hash (pending / booked counters)
-- KEYS[2]  {e:ID}:seats   hash seat -> state
-- KEYS[3]  {e:ID}:b:<bid> booking record
-- ARGV[1]  booking id (string)
-- ARGV[2..] the booking's seats (strings)
--
-- Reply: the booking's status afterwards: "confirmed", "cancelled", "rejected", or
-- "missing" when Redis has no record of it (Redis lost its data since the claim).
--
-- Example: EVALSHA <sha> 3 {e:wc}:meta {e:wc}:seats {e:wc}:b:0192... 0192... A1 A2
--   -> "confirmed"   (A1 and A2 are now "booked:0192...")

local meta_key, seats_key, booking_key = KEYS[1], KEYS[2], KEYS[3]
local bid = ARGV[1]
assert(bid and #ARGV >= 2, 'confirm.lua: booking id and seats required')

local status = redis.call('HGET', booking_key, 'status')
if not status then
  return 'missing'
end
if status ~= 'pending' then
  return status
end

local pending, booked, moved = 'pending:' .. bid, 'booked:' .. bid, 0
for i = 2, #ARGV do
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
