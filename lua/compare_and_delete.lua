-- Deletes KEYS[1] only if it still holds ARGV[1] (a lease token), so a holder whose lease
-- expired and was taken over cannot release the new holder's lease.
-- Returns 1 if the key was deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
