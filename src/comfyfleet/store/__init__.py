"""Redis-backed shared state: jobs, queues, leases, events, nodes, workflows, results.

Knows the job model; knows nothing of HTTP or ComfyUI.
"""
