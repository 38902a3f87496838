-- answered.lua: note in an idempotency record the status code its claim was answered
-- with, when that was not the claim outcome's own (a `Prefer: wait` claim answered 201
-- confirmed or 409 rejected instead of 202 pending), so that a replay answers the same
-- status code whatever its own `Prefer` header says.
--
-- KEYS[1]  {e:ID}:idem:..  the idempotency record (hash: fp, reply[, answered])
--
-- ARGV[1]  request fingerprint (string): the record is only touched if it is this
--          request's (it may have expired and been taken by another request since)
-- ARGV[2]  HTTP status code answered (integer, e.g. 201)
--
-- Reply: 1 when noted, 0 when the record is gone or is another request's.
--
-- Example: EVALSHA <sha> 1 {e:wc}:idem:5:alice:k1 9f86d0... 201  -> 1

local idem_key = KEYS[1]
local fp, status = ARGV[1], tonumber(ARGV[2])
assert(idem_key and fp and status, 'answered.lua: missing arguments')

if redis.call('HGET', idem_key, 'fp') ~= fp then
  return 0
end
redis.call('HSET', idem_key, 'answered', status)
return 1
