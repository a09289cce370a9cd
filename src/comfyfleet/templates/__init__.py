"""Workflow templates: API-format graphs with named, typed parameters bound by node title.

`model` holds the shapes, `loader` reads and validates a folder once, `render` is the pure
core (validate, resolve randomness, render), `registry` publishes to and reads from Redis.
"""
