-- reap_node: a node whose heartbeat lapsed is marked lost and every job it still holds is
-- taken back at once (see take_back in _lib.lua: requeued avoiding that node, or failed when
-- out of attempts, or cancelled), instead of waiting out each job's lease. The node's
-- last-seen score is checked here, in the same atomic step, so a node whose heartbeat came
-- back between the reaper's read and this call keeps its jobs. Safe in every reaper at once.
--
-- KEYS[1..5]  per-status job indexes (see _lib.lua)
-- KEYS[6]     {ns}:running          running jobs (score lease deadline ms)
-- KEYS[7]     {ns}:stats
-- KEYS[8]     {ns}:nodes            node id -> last heartbeat (ms)
-- KEYS[9]     {ns}:owned:<node>     the lost node's jobs
-- KEYS[10]    {ns}:lost             node id -> when it was marked lost (ms)
-- A (ReapNodeArgs)  node_id, lost_after_ms (the node is lost when last seen that long
--             ago or longer, by the fleet's clock). The node's job ids are read here, so their keys are built
--             from NS prefixes.
--
-- Returns {marked, id...}: marked is 1 when this call marked the node lost (exactly one
-- reaper sees 1 per loss), 0 when it was already marked or is alive; then the ids taken back.
local now, node_id = NOW, A.node_id
local last = redis.call('ZSCORE', KEYS[8], node_id)
if last and tonumber(last) > NOW - A.lost_after_ms then
  return { 0 }
end
local marked = redis.call('ZADD', KEYS[10], 'NX', now, node_id)
local ctx = { now = now, running_key = KEYS[6], stats_key = KEYS[7] }
local reply, wake = { marked }, false
for _, job_id in ipairs(redis.call('SMEMBERS', KEYS[9])) do
  local f = redis.call('HMGET', NS.job_prefix .. job_id, unpack(TAKE_BACK_FIELDS))
  if f[1] ~= 'running' or f[2] ~= node_id then
    -- Not this node's running job any more: a leftover set member.
    redis.call('SREM', KEYS[9], job_id)
  else
    local status = take_back(job_id, f, CODE.node_lost,
      'the node stopped sending heartbeats while it held the job', ctx)
    wake = wake or status == 'queued'
    reply[#reply + 1] = job_id
  end
end
if wake then
  redis.call('PUBLISH', NS.wake_channel, '')
end
return reply
