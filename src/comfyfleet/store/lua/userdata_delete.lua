-- userdata_delete: remove one file of a principal's editor user data (store/userdata.py).
-- KEYS[1] {ns}:userdata:<principal>       HASH path -> bytes
-- KEYS[2] {ns}:userdata:<principal>:meta  HASH path -> meta JSON
-- A (userdata.DeleteArgs)  path
-- Returns 1 when the file was there, 0 when it was not.
redis.call('HDEL', KEYS[1], A.path)
return redis.call('HDEL', KEYS[2], A.path)
