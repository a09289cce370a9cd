"""The one owner of the Redis key space. No key string is built anywhere else.

Every key starts with `{ns}` -- the namespace in braces is a Redis Cluster hash tag, so the
whole key space of one fleet sits in one slot and multi-key Lua scripts stay legal there.

key                        type   TTL             written by
{ns}:job:<id>              HASH   retention, once terminal enqueue/claim/... scripts
{ns}:jobs                  ZSET   -               enqueue (score seq); listing index, newest last;
                                                  entries of expired jobs removed when listed
{ns}:jobs:<status>         ZSET   -               every job script (score seq): listing by status
{ns}:queue:<pool>          ZSET   -               enqueue/requeue (score priority+seq), claim pops
{ns}:delayed               ZSET   -               fail with backoff (score ready ms); claim and
                                                  the reaper promote due ones to their queue
{ns}:running               ZSET   -               claim/renew (score lease deadline ms); reaper
{ns}:owned:<node>          SET    -               claim adds, finish removes: a node's jobs
{ns}:seq                   STRING -               enqueue INCR: FIFO sequence
{ns}:idem:<key>            STRING idempotency TTL enqueue: idempotency key -> job id
{ns}:events:<id>           STREAM retention, once every script + node progress; capped (MAXLEN ~)
                                  terminal
{ns}:wake                  PUBSUB -               enqueue/requeue/retry/release/promotion
                                                  publish; idle nodes wake (hint only)
{ns}:cancel                PUBSUB -               cancel of a running job publishes the id (hint)
{ns}:node:<id>             HASH   heartbeat TTL   node heartbeat (status, inventory, load)
{ns}:nodes                 ZSET   -               heartbeat (score last-seen ms)
{ns}:node:<id>:control     HASH   -               balancer drain/resume requests
{ns}:workflow:<name>       HASH   -               publish: version -> template JSON, "current"
{ns}:workflows             HASH   -               publish: name -> current version
{ns}:result:<job>:<index>  STRING result TTL      node: output bytes
{ns}:stats                 HASH   -               job scripts: counters (enqueued, claimed,
                                                  succeeded, failed, cancelled, retried,
                                                  expired, released, stale)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key builders for one namespace."""

    namespace: str

    @property
    def prefix(self) -> str:
        return "{" + self.namespace + "}"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def job_prefix(self) -> str:
        """The prefix scripts append a job id to (they build job keys from ids they pop)."""
        return f"{self.prefix}:job:"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    def jobs_by_status(self, status: str) -> str:
        """The listing index of the jobs in one status (a JobStatus value)."""
        return f"{self.prefix}:jobs:{status}"

    def queue(self, pool: str) -> str:
        return f"{self.prefix}:queue:{pool}"

    def queue_prefix(self) -> str:
        return f"{self.prefix}:queue:"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}:delayed"

    @property
    def running(self) -> str:
        return f"{self.prefix}:running"

    def owned(self, node_id: str) -> str:
        return f"{self.prefix}:owned:{node_id}"

    def owned_prefix(self) -> str:
        return f"{self.prefix}:owned:"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:seq"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}:events:{job_id}"

    def events_prefix(self) -> str:
        return f"{self.prefix}:events:"

    @property
    def wake_channel(self) -> str:
        return f"{self.prefix}:wake"

    @property
    def cancel_channel(self) -> str:
        return f"{self.prefix}:cancel"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}:nodes"

    def node_control(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}:control"

    def workflow(self, name: str) -> str:
        return f"{self.prefix}:workflow:{name}"

    @property
    def workflows(self) -> str:
        return f"{self.prefix}:workflows"

    def result(self, job_id: str, index: int) -> str:
        return f"{self.prefix}:result:{job_id}:{index}"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"
