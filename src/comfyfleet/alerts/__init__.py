"""Alerts: rules evaluated by one balancer at a time, and the receivers they go to."""
