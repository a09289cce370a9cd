-- class_register: list a capability class the first time a job needs it, so nodes see it
-- (they read the classes listed after the last one they saw, by the order number here).
--
-- KEYS[1]  {ns}:requirement   class -> requirement JSON
-- KEYS[2]  {ns}:classes       class -> order number (score)
-- KEYS[3]  {ns}:classes:seq   the last order number given
-- A (routing.RegisterArgs)  class_id, requirement (JSON)
--
-- Returns 1 when the class is new, else 0.
if redis.call('HSETNX', KEYS[1], A.class_id, A.requirement) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), A.class_id)
return 1
