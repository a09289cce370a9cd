"""The api suite's roles (a balancer, a node driving a stand-in, an HTTP session)."""

from tests.api.conftest import balancer, node, session

__all__ = ["balancer", "node", "session"]
