-- clock_now: the fleet's time (ms), read by Python for comparisons with times the scripts
-- wrote (node liveness in listings) and by nodes to measure their own clock's skew.
-- KEYS[1]  {ns}:clock   the test suite's steering of the clock (see _clock.lua)
-- A (scripts.NoArgs)  none
-- Returns now (ms).
return clock_ms(KEYS[1])
