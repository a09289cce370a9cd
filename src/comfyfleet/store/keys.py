"""The one owner of the Redis key space. No key string is built anywhere else.

Every key starts with `{ns}` -- the namespace in braces is a Redis Cluster hash tag, so the
whole key space of one fleet sits in one slot and multi-key Lua scripts stay legal there.

key                        type   TTL             written by
{ns}:job:<id>              HASH   retention, once terminal enqueue/claim/... scripts
{ns}:jobs:<status>         ZSET   -               every job script (score seq): listing by status
                                                  (a job is in exactly one: the five together
                                                  list every job); entries of expired jobs
                                                  removed when listed
{ns}:queue:<pool>:<class>:<owner>
                           ZSET   -               job scripts (push_job/pull_job in _lib.lua):
                                                  one tenant's queued jobs of one capability
                                                  class (score priority+seq); claim pops
{ns}:fair:<pool>:<class>   ZSET   -               job scripts: tenants with queued jobs of the
                                                  class (score virtual time)
{ns}:serve:<pool>:<digest> ZSET   -               job scripts, lua/cover.lua: classes with
                                                  queued jobs nodes of the inventory digest can
                                                  run (score their first tenant's virtual
                                                  time); "*": nodes with no inventory yet
{ns}:cover:<class>         SET    -               store/routing.py (balancer at a class's first
                                                  job, node when it sees a class): digests
                                                  whose nodes can run the class
{ns}:active:<pool>:<owner> SET    -               job scripts: classes the tenant waits in
{ns}:parked:<owner>        SET    -               job scripts: "<pool>\x1f<class>" the tenant
                                                  left at its max_running
{ns}:vtime:<pool>          HASH   -               job scripts: owner -> virtual time (ms of GPU
                                                  time / weight), "~system" -> the pool's
{ns}:cost:<pool>           HASH   -               job scripts: class -> moving average run ms
{ns}:depth                 HASH   -               job scripts: pool -> queued jobs
{ns}:classes               ZSET   -               store/routing.py: capability class -> the
                                                  order it was first seen (score)
{ns}:classes:seq           STRING -               store/routing.py: INCR per new class
{ns}:requirement           HASH   -               store/routing.py: class -> its requirement
                                                  (JSON: node classes, model files)
{ns}:delayed               ZSET   -               fail with backoff (score ready ms); claim and
                                                  the reaper promote due ones to their queue
{ns}:running               ZSET   -               claim/renew (score lease deadline ms); reaper
{ns}:owned:<node>          SET    -               claim adds, finish removes: a node's jobs
{ns}:seq                   STRING -               enqueue INCR: FIFO sequence
{ns}:idem:<owner>:<key>    STRING idempotency TTL enqueue: an owner's idempotency key -> job id
{ns}:jobs:by:<owner>       ZSET   -               enqueue (score seq): one owner's jobs, for its
                                                  listing; entries of expired jobs removed
                                                  when listed
{ns}:events:<id>           STREAM retention, once every script + node progress; capped (MAXLEN ~);
                                  terminal        opened by the first event after `queued`
                                                  (open_log in lua/_lib.lua), compacted by
                                                  the script that ends the job (compact_log)
{ns}:wake                  PUBSUB -               enqueue/requeue/retry/release/promotion
                                                  publish; idle nodes wake (hint only)
{ns}:cancel                PUBSUB -               cancel of a running job publishes the id (hint)
{ns}:node:<id>             HASH   heartbeat TTL   node heartbeat (status, inventory, load)
{ns}:nodes                 ZSET   -               heartbeat (score last-seen ms)
{ns}:node:<id>:control     HASH   -               balancer drain/resume requests
{ns}:ready:<pool>          ZSET   -               heartbeat (score last-seen ms) of nodes ready
                                                  to claim in the pool; claim reads it to pass
                                                  over a job that avoids the claiming node
{ns}:lost                  ZSET   -               reap_node (score ms marked lost); heartbeat
                                                  and the reaper's forget remove
{ns}:workflow:<name>       HASH   -               templates/lua publish/rollback/retire: version
                                                  -> template JSON, "current" -> the active
                                                  version, "seeded" -> the version a balancer
                                                  last published from its folders
{ns}:workflow:<name>:log   LIST   -               the same scripts: one JSON entry per publish,
                                                  rollback or retire (newest last, capped)
{ns}:workflows             HASH   -               the same scripts: name -> active version
{ns}:blob:<object key>     STRING output TTL      blobs/redis_blobs.py (Redis blob store only):
                                                  output bytes, renamed here once whole
{ns}:blob-part:<token>     STRING 10 min          blobs/redis_blobs.py: a blob being written
{ns}:clock                 HASH   -               the test suite only (lua/_clock.lua): frozen_ms
                                                  replaces Redis TIME, or offset_ms is added to
                                                  it; nothing in the fleet writes it and no API
                                                  reaches it
{ns}:stats                 HASH   -               job scripts: counters (enqueued, claimed,
                                                  succeeded, failed, cancelled, retried,
                                                  expired, released, stale)
{ns}:apikey:<id>           HASH   -               store/apikeys.py: name, sha256 of the key,
                                                  created_ms, last_used_ms, scopes; revoke
                                                  deletes it
{ns}:apikeys               ZSET   -               store/apikeys.py (score created ms): listing
{ns}:tenant:<owner>        HASH   -               one tenant (a job owner, Job.owner): config
                                                  written by `comfyfleet apikey` (weight,
                                                  max_running, max_queued) and live counters
                                                  (queued, running) kept by set_status in
                                                  lua/_lib.lua on every status change
{ns}:inventory:<digest>    STRING -               store/inventory.py (a node, once per digest):
                                                  {"object_info", "models"} of that inventory
{ns}:inventories           SET    -               store/inventory.py: every digest published
                                                  and not yet dropped
{ns}:inventories:unused    HASH   -               store/inventory.py sweep (the reaper):
                                                  digest -> since when no registered node has
                                                  it; dropped with its coverage after an hour
{ns}:inventory-union:<id>  STRING 1 day           store/inventory.py: merged object_info of a
                                                  set of digests (id: hash of the sorted set)
{ns}:authfail:<source>     HASH   15 min after    store/logins.py: failed logins of one address
                                  the last        (count, until_ms); a correct login deletes it
{ns}:authfail              PUBSUB -               lua/login_failed.lua publishes the source;
                                                  processes forget what they cached as clean
{ns}:input:<id>            HASH   input TTL       store/inputs.py: an uploaded image (bytes, type,
                                                  size); each job that names it extends the TTL
{ns}:input-names:<owner>   HASH   input TTL after store/input_names.py: the names a ComfyUI
                                  the owner's     client gave its uploads ("subfolder/file")
                                  last upload     -> input name; each name forgotten an input
                                                  TTL after it was given (lua/input_name.lua)
{ns}:input-name-times:<owner> ZSET (the same)    name -> when it was last given (ms)
{ns}:inputs:ledger         ZSET   -               lua/input_put.lua: "<id>|<size>|<caller>" by
                                                  expiry ms, what each caller is charged for
{ns}:inputs:usage          HASH   -               lua/input_put.lua: caller -> bytes held, "*"
                                                  -> all; refunded as inputs expire
{ns}:preview:<job>         HASH   preview TTL     node/previews.py: the job's latest preview
{ns}:joblog:<job>:<n>      LIST   retention, from store/joblogs.py (node): ComfyUI's lines of the
                                  each append     job's attempt n, JSON each, capped (200 lines,
                                                  64 KiB); when the attempt ends the job, the
                                                  script that ends it moves a short list into
                                                  the job hash (fold_joblog in lua/_lib.lua),
                                                  where later lines join it while they fit
                                                  (lua/joblog_append.lua)
{ns}:comfy-history-hidden:<owner>  HASH  retention, from  store/comfy_history.py: job id -> 1 for
                                  each write      prompts the owner deleted from its ComfyUI
                                                  /history, `cleared_ms` for its last clear
{ns}:hook:<job>            HASH   retention       store/webhooks.py at submit: the job's webhook
                                                  options (events, base URL, progress cursor)
{ns}:webhooks:fleet        STRING -               balancer with a fleet-wide webhook: "1"
{ns}:webhooks:ended        ZSET   -               _lib.lua finish() (score ended ms): jobs whose
                                                  webhooks are due (name passed in NS)
{ns}:webhooks:due          ZSET   -               store/webhooks.py (score due ms, or the claim
                                                  deadline while a replica sends it)
{ns}:webhook:<id>          HASH   dead TTL once   store/webhooks.py: one delivery (url, body,
                                  given up        attempts, last error)
{ns}:webhooks:dead         ZSET   -               store/webhooks.py (score ms given up)
{ns}:webhooks:following    ZSET   -               store/webhooks.py (score next look ms): jobs
                                                  whose progress is forwarded to their webhook
{ns}:leader:<name>         STRING lease TTL       store/leader.py: the holder's token
                                                  "<epoch>:<holder>" of a singleton's lease
{ns}:leader:<name>:epoch   STRING -               store/leader.py: INCR per acquisition (fencing)
{ns}:alerts:state          HASH   -               alerts_commit (the evaluator, fenced):
                                                  fingerprint -> alert state JSON
{ns}:alerts:samples        ZSET   -               alerts_commit (score ms): counter samples for
                                                  windowed rules, trimmed to the longest window
{ns}:alerts:due            ZSET   -               alerts_commit adds (score due ms, or the claim
                                                  deadline while sent); webhook_claim/settle
{ns}:alert:<id>            HASH   dead TTL once   alerts_commit: one notification to one
                                  given up        receiver (webhook delivery layout)
{ns}:alerts:dead           ZSET   -               webhook_settle (score ms given up)
{ns}:hist                  HASH   -               lua/_observe.lua (claim, finish) and senders:
                                                  fleet-wide histogram buckets (histograms.py)
{ns}:stats:ended           HASH   -               lua/_observe.lua finish: ended jobs per
                                                  workflow, pool and status (both names
                                                  passed to Lua in NS)
{ns}:userdata:<principal>  HASH   -               lua/userdata_*.lua (the editor's user data,
                                                  store/userdata.py): path -> file bytes, per
                                                  principal label (saved workflows and the like)
{ns}:userdata:<principal>:meta HASH -             the same scripts: path -> {"size", "created_ms",
                                                  "modified_ms"} JSON, what listings read
{ns}:settings:<principal>  HASH   -               store/userdata.py (HSET): the editor's settings
                                                  of one principal, id -> JSON value
{ns}:usage:<day>           HASH   90 days after   lua/_usage.lua finish: per owner, workflow
                                  the day         and measure (jobs by outcome, gpu_ms,
                                                  queue_ms, output_bytes) of jobs that ended
                                                  that day (days since the epoch, UTC)
{ns}:usage:total           HASH   -               lua/_usage.lua finish: per owner and
                                                  measure since the namespace began (/metrics)
{ns}:comfy-client:<owner>:<client>
                           STREAM 24 h after the  balancer/native (POST /prompt): the ids of
                                  last prompt     the prompts one principal posted with one
                                                  ComfyUI client_id (capped); the native
                                                  websocket reads it to find its prompts
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

    def jobs_by_status(self, status: str) -> str:
        """The listing index of the jobs in one status (a JobStatus value)."""
        return f"{self.prefix}:jobs:{status}"

    def queue(self, pool: str, capability: str, owner: str) -> str:
        """One tenant's queued jobs of one capability class in one pool."""
        return f"{self.prefix}:queue:{pool}:{capability}:{owner}"

    def queue_prefix(self) -> str:
        return f"{self.prefix}:queue:"

    def fair(self, pool: str, capability: str) -> str:
        return f"{self.prefix}:fair:{pool}:{capability}"

    def serve(self, pool: str, digest: str) -> str:
        return f"{self.prefix}:serve:{pool}:{digest}"

    def cover(self, capability: str) -> str:
        return f"{self.prefix}:cover:{capability}"

    def vtime(self, pool: str) -> str:
        return f"{self.prefix}:vtime:{pool}"

    @property
    def depth(self) -> str:
        return f"{self.prefix}:depth"

    @property
    def classes(self) -> str:
        return f"{self.prefix}:classes"

    @property
    def classes_seq(self) -> str:
        return f"{self.prefix}:classes:seq"

    @property
    def requirements(self) -> str:
        return f"{self.prefix}:requirement"

    def scheduling_prefixes(self) -> dict[str, str]:
        """The prefixes the job scripts build fair-share and routing keys from (NS)."""
        p = self.prefix
        return {
            "fair_prefix": f"{p}:fair:",
            "serve_prefix": f"{p}:serve:",
            "cover_prefix": f"{p}:cover:",
            "active_prefix": f"{p}:active:",
            "parked_prefix": f"{p}:parked:",
            "vtime_prefix": f"{p}:vtime:",
            "cost_prefix": f"{p}:cost:",
        }

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

    def idempotency(self, owner: str, key: str) -> str:
        """An idempotency key is the owner's own: two tenants using one get two jobs."""
        return f"{self.prefix}:idem:{owner}:{key}"

    def jobs_of_owner(self, owner: str) -> str:
        """The listing index of one owner's jobs (owner: a Principal label)."""
        return f"{self.prefix}:jobs:by:{owner}"

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

    def ready(self, pool: str) -> str:
        return f"{self.prefix}:ready:{pool}"

    def ready_prefix(self) -> str:
        return f"{self.prefix}:ready:"

    @property
    def lost(self) -> str:
        return f"{self.prefix}:lost"

    def workflow(self, name: str) -> str:
        return f"{self.prefix}:workflow:{name}"

    def workflow_prefix(self) -> str:
        """The prefix scripts append a workflow name to (finish() looks up a version)."""
        return f"{self.prefix}:workflow:"

    def workflow_log(self, name: str) -> str:
        return f"{self.prefix}:workflow:{name}:log"

    @property
    def workflows(self) -> str:
        return f"{self.prefix}:workflows"

    def comfy_history_hidden(self, owner: str) -> str:
        """What one owner removed from its ComfyUI /history (store/comfy_history.py)."""
        return f"{self.prefix}:comfy-history-hidden:{owner}"

    def blob(self, object_key: str) -> str:
        return f"{self.prefix}:blob:{object_key}"

    def blob_part(self, token: str) -> str:
        return f"{self.prefix}:blob-part:{token}"

    @property
    def clock(self) -> str:
        """The test suite's steering of the fleet's clock (lua/_clock.lua); never written
        by the fleet itself."""
        return f"{self.prefix}:clock"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"

    def apikey(self, key_id: str) -> str:
        return f"{self.prefix}:apikey:{key_id}"

    @property
    def apikeys(self) -> str:
        return f"{self.prefix}:apikeys"

    def tenant(self, owner: str) -> str:
        """One tenant's record; `owner` is a job's owner (web.auth.Principal.label)."""
        return f"{self.prefix}:tenant:{owner}"

    def tenant_prefix(self) -> str:
        """The prefix scripts append a job's owner to (set_status in lua/_lib.lua)."""
        return f"{self.prefix}:tenant:"

    def inventory(self, digest: str) -> str:
        return f"{self.prefix}:inventory:{digest}"

    @property
    def inventories(self) -> str:
        return f"{self.prefix}:inventories"

    @property
    def inventories_unused(self) -> str:
        return f"{self.prefix}:inventories:unused"

    def inventory_union(self, union_id: str) -> str:
        return f"{self.prefix}:inventory-union:{union_id}"

    def login_failures(self, source: str) -> str:
        return f"{self.prefix}:authfail:{source}"

    @property
    def login_failed_channel(self) -> str:
        return f"{self.prefix}:authfail"

    @property
    def input_prefix(self) -> str:
        """The prefix input_put.lua appends an input id to (ids it reads from its ledger)."""
        return f"{self.prefix}:input:"

    def input(self, input_id: str) -> str:
        return f"{self.prefix}:input:{input_id}"

    def input_names(self, owner: str) -> str:
        return f"{self.prefix}:input-names:{owner}"

    def input_name_times(self, owner: str) -> str:
        return f"{self.prefix}:input-name-times:{owner}"

    @property
    def input_ledger(self) -> str:
        return f"{self.prefix}:inputs:ledger"

    @property
    def input_usage(self) -> str:
        return f"{self.prefix}:inputs:usage"

    def preview(self, job_id: str) -> str:
        return f"{self.prefix}:preview:{job_id}"

    def job_log(self, job_id: str, attempt: int) -> str:
        """ComfyUI's log lines of one attempt of a job."""
        return f"{self.job_log_prefix()}{job_id}:{attempt}"

    def job_log_prefix(self) -> str:
        return f"{self.prefix}:joblog:"

    def webhook_job(self, job_id: str) -> str:
        return f"{self.prefix}:hook:{job_id}"

    @property
    def webhook_fleet(self) -> str:
        return f"{self.prefix}:webhooks:fleet"

    @property
    def webhook_ended(self) -> str:
        """Written by `finish()` in lua/_lib.lua (passed in the scripts' `Namespace`)."""
        return f"{self.prefix}:webhooks:ended"

    @property
    def webhook_due(self) -> str:
        return f"{self.prefix}:webhooks:due"

    def webhook(self, delivery_id: str) -> str:
        return f"{self.prefix}:webhook:{delivery_id}"

    def webhook_prefix(self) -> str:
        return f"{self.prefix}:webhook:"

    @property
    def webhook_dead(self) -> str:
        return f"{self.prefix}:webhooks:dead"

    @property
    def webhook_following(self) -> str:
        return f"{self.prefix}:webhooks:following"

    def leader(self, name: str) -> str:
        return f"{self.prefix}:leader:{name}"

    def leader_epoch(self, name: str) -> str:
        return f"{self.prefix}:leader:{name}:epoch"

    @property
    def alerts_state(self) -> str:
        return f"{self.prefix}:alerts:state"

    @property
    def alerts_samples(self) -> str:
        return f"{self.prefix}:alerts:samples"

    @property
    def alerts_due(self) -> str:
        return f"{self.prefix}:alerts:due"

    def alert_prefix(self) -> str:
        """Prefix of one notification's delivery record, `{ns}:alert:<id>`."""
        return f"{self.prefix}:alert:"

    @property
    def alerts_dead(self) -> str:
        return f"{self.prefix}:alerts:dead"

    @property
    def hist(self) -> str:
        """Written by lua/_observe.lua (passed in the scripts' `Namespace`)."""
        return f"{self.prefix}:hist"

    @property
    def usage_prefix(self) -> str:
        """`{ns}:usage:` + a day (whole days since the epoch): lua/_usage.lua's day hash."""
        return f"{self.prefix}:usage:"

    def usage_day(self, day: int) -> str:
        return f"{self.usage_prefix}{day}"

    @property
    def usage_total(self) -> str:
        """Written by lua/_usage.lua (passed in the scripts' `Namespace`)."""
        return f"{self.prefix}:usage:total"

    @property
    def stats_ended(self) -> str:
        """Written by lua/_observe.lua (passed in the scripts' `Namespace`)."""
        return f"{self.prefix}:stats:ended"

    def userdata(self, principal: str) -> str:
        """One principal's editor files (store/userdata.py); `principal` is its label."""
        return f"{self.prefix}:userdata:{principal}"

    def userdata_meta(self, principal: str) -> str:
        return f"{self.prefix}:userdata:{principal}:meta"

    def settings(self, principal: str) -> str:
        return f"{self.prefix}:settings:{principal}"

    def comfy_client(self, owner: str, client_id: str) -> str:
        return f"{self.prefix}:comfy-client:{owner}:{client_id}"
