"""The engine fixtures of tests/enginefixtures.py, for this tier's tests."""

from enginefixtures import *  # noqa: F403  (names tests import from conftest)
from enginefixtures import engine, flows, http_server, make_engine

__all__ = ["engine", "flows", "http_server", "make_engine"]
