"""The balancer role: the public job API, admission, the reaper. Holds no state of its own."""
