"""Benchmarks make keyspaces of their own: those they drive themselves are retired at once, so
Airflow's pipeline runs never serve them (against the real Cassandra and Kafka)."""

from __future__ import annotations

from bench.pipeline import cleanup, fresh
from streamfit.cassandra import connect
from streamfit.progress import keyspace_states
from streamfit.settings import Settings


def test_a_benchmark_keyspace_is_retired_unless_it_measures_airflow(stack: Settings) -> None:
    driven = fresh(stack, "t")
    measured = fresh(stack, "t", served=True)
    try:
        with connect(stack, keyspace=None) as session:
            states = {k.name: (k.served, k.why) for k in keyspace_states(session, stack.keyspace)}
        assert states[driven.keyspace] == (False, "retired")
        assert states[measured.keyspace] == (False, "never announced")
    finally:
        cleanup(driven)
        cleanup(measured)
