"""``Workspace``: one keyspace as the stages work on it.

Made once where work starts (a CLI command, a pipeline task's run per keyspace in
``progress.run_stage``, the HTTP server, a Spark job's driver, a test) and passed to the stages.
It carries the process's settings pointed at the keyspace, an open session, and the domain the
keyspace records (``STREAMFIT_DOMAIN`` for a keyspace not migrated yet), so that no stage unpacks
settings into a session, a keyspace and a domain, or rebuilds the same stores, on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from cassandra.cluster import Session

from streamfit.domains import Domain, load_domain
from streamfit.settings import Settings

if TYPE_CHECKING:
    from streamfit.featurestore import FeatureStore
    from streamfit.progress import Progress
    from streamfit.registry import Registry


@dataclass(frozen=True)
class Workspace:
    settings: Settings
    session: Session
    domain: Domain

    @property
    def keyspace(self) -> str:
        return self.settings.keyspace

    @cached_property
    def registry(self) -> Registry:
        """The keyspace's model registry (the domain's model family)."""
        from streamfit.registry import Registry

        return Registry(self.session, self.keyspace, self.domain.model_name)

    @cached_property
    def progress(self) -> Progress:
        """The stages' watermarks, leases and feature-build log."""
        from streamfit.progress import Progress

        return Progress(self.session, self.keyspace)

    def feature_store(self, cache_ttl_s: float | None = None) -> FeatureStore:
        """A new feature store: its raw-partition cache lives as long as the caller keeps it
        (``cache_ttl_s`` None: for its whole life, as a build or scoring run wants)."""
        from streamfit.featurestore import FeatureStore

        return FeatureStore(self.session, self.keyspace, self.domain, cache_ttl_s)


def workspace(settings: Settings, session: Session, keyspace: str | None = None) -> Workspace:
    """The workspace of ``keyspace`` (default: ``settings.keyspace``) on an open session (the
    caller closes it)."""
    from streamfit.schema import recorded_domain

    if keyspace is not None and keyspace != settings.keyspace:
        settings = settings.model_copy(update={"keyspace": keyspace})
    recorded = recorded_domain(session, settings.keyspace)
    if recorded is not None and recorded != settings.domain:
        settings = settings.model_copy(update={"domain": recorded})
    return Workspace(settings, session, load_domain(settings.domain))


@contextmanager
def open_workspace(settings: Settings, keyspace: str | None = None) -> Iterator[Workspace]:
    """Connect, and yield the workspace of ``keyspace`` (default: ``STREAMFIT_KEYSPACE``)."""
    from streamfit.cassandra import connect

    with connect(settings, keyspace=keyspace or settings.keyspace) as session:
        yield workspace(settings, session, keyspace)
