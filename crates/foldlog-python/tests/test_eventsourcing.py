"""The ``eventsourcing`` library's own test cases (9.5.6), run unmodified against ``eventsourcing_foldlog``.

Each class below subclasses one of the library's test cases and provides only what that case asks a
backend for: a fresh recorder (``create_recorder``), a factory environment (``env``), the expected classes,
a view class, or the environment variables of an application. No test method is overridden. The added
methods are how the library lets a backend run a test: ``test_insert_subscribe`` opts in to its
subscription test, and the DCB recorder case, whose tests are helpers (``_test_append_read``,
``_test_append_subscribe``) taking a recorder, gets one test method per helper, each calling it on a new
recorder.

Every test gets a new temporary directory as ``FOLDLOG_PATH``, so every store starts empty, as the cases
expect (notification ids from 1).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, ClassVar
from unittest import TestCase

import foldlog
from eventsourcing.dcb import tests as dcb_cases
from eventsourcing.dcb.msgpack import MessagePackMapper
from eventsourcing.persistence import Tracking
from eventsourcing.tests import application as app_cases
from eventsourcing.tests import persistence as cases
from eventsourcing.tests import projection as projection_cases
from eventsourcing.utils import Environment, get_topic

from eventsourcing_foldlog import (
    Factory,
    FoldlogAggregateRecorder,
    FoldlogApplicationRecorder,
    FoldlogDCBRecorder,
    FoldlogProcessRecorder,
    FoldlogSnapshotRecorder,
    FoldlogTrackingRecorder,
)
from eventsourcing_foldlog.recorders import translate

MODULE = "eventsourcing_foldlog"


class TemporaryStores(TestCase):
    """A new ``FOLDLOG_PATH`` per test, and a factory on it, closed and removed after the test."""

    def setUp(self) -> None:
        self.foldlog_path = tempfile.mkdtemp(prefix="foldlog-es-")
        self.factory = Factory(Environment("TestCase", {Factory.FOLDLOG_PATH: self.foldlog_path}))
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        self.factory.close()
        shutil.rmtree(self.foldlog_path, ignore_errors=True)


class TestAggregateRecorder(TemporaryStores, cases.AggregateRecorderTestCase):
    def create_recorder(self) -> FoldlogAggregateRecorder:
        recorder = self.factory.aggregate_recorder()
        assert isinstance(recorder, FoldlogAggregateRecorder)
        return recorder


class TestSnapshotRecorder(TemporaryStores, cases.AggregateRecorderTestCase):
    """The aggregate recorder contract again, on the snapshot store (any versions, all kept)."""

    def create_recorder(self) -> FoldlogSnapshotRecorder:
        recorder = self.factory.aggregate_recorder("snapshots")
        assert isinstance(recorder, FoldlogSnapshotRecorder)
        return recorder


class TestApplicationRecorder(TemporaryStores, cases.ApplicationRecorderTestCase[FoldlogApplicationRecorder]):
    def create_recorder(self) -> FoldlogApplicationRecorder:
        recorder = self.factory.application_recorder()
        assert isinstance(recorder, FoldlogApplicationRecorder)
        return recorder

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestApplicationRecorderWithStrIds(TestApplicationRecorder):
    """The same cases with ``str`` originator ids: they must come back as ``str``."""

    def new_originator_id(self) -> str:
        return "account-" + os.urandom(8).hex()


class TestTrackingRecorder(TemporaryStores, cases.TrackingRecorderTestCase):
    def create_recorder(self) -> FoldlogTrackingRecorder:
        return self.factory.tracking_recorder()


class TestProcessRecorder(TemporaryStores, cases.ProcessRecorderTestCase):
    def create_recorder(self) -> FoldlogProcessRecorder:
        recorder = self.factory.process_recorder()
        assert isinstance(recorder, FoldlogProcessRecorder)
        return recorder


class TestNonInterleavingNotificationIDs(TemporaryStores, cases.NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> FoldlogApplicationRecorder:
        recorder = self.factory.application_recorder()
        assert isinstance(recorder, FoldlogApplicationRecorder)
        return recorder


class CustomTrackingRecorder(FoldlogTrackingRecorder):
    """A subclass, for the factory's "tracking recorder class given" paths."""


class TestInfrastructureFactory(cases.InfrastructureFactoryTestCase[Factory]):
    def expected_factory_class(self) -> type[Factory]:
        return Factory

    def expected_aggregate_recorder_class(self) -> type[FoldlogAggregateRecorder]:
        return FoldlogAggregateRecorder

    def expected_application_recorder_class(self) -> type[FoldlogApplicationRecorder]:
        return FoldlogApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[FoldlogTrackingRecorder]:
        return FoldlogTrackingRecorder

    def tracking_recorder_subclass(self) -> type[FoldlogTrackingRecorder]:
        return CustomTrackingRecorder

    def expected_process_recorder_class(self) -> type[FoldlogProcessRecorder]:
        return FoldlogProcessRecorder

    def setUp(self) -> None:
        self.foldlog_path = tempfile.mkdtemp(prefix="foldlog-es-")
        self.env = Environment(
            "TestCase", {Factory.PERSISTENCE_MODULE: MODULE, Factory.FOLDLOG_PATH: self.foldlog_path}
        )
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        shutil.rmtree(self.foldlog_path, ignore_errors=True)


class ApplicationEnvironment(TestCase):
    """Applications read their persistence settings from ``os.environ``: set them for one test."""

    def setUp(self) -> None:
        self.foldlog_path = tempfile.mkdtemp(prefix="foldlog-es-")
        os.environ["PERSISTENCE_MODULE"] = MODULE
        os.environ[Factory.FOLDLOG_PATH] = self.foldlog_path
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        del os.environ["PERSISTENCE_MODULE"]
        del os.environ[Factory.FOLDLOG_PATH]
        shutil.rmtree(self.foldlog_path, ignore_errors=True)


class TestApplication(ApplicationEnvironment, app_cases.ApplicationTestCase):
    pass


class TestExampleApplication(ApplicationEnvironment, app_cases.ExampleApplicationTestCase):
    expected_factory_topic = "eventsourcing_foldlog.factory:Factory"


class FoldlogEventCounters(FoldlogTrackingRecorder, projection_cases.EventCountersView):
    """The counters view the projection cases ask for: each counter is a stream, each increment an event
    appended in one batch with its tracking record (so a repeated tracking id changes no counter)."""

    def _count(self, counter: str) -> int:
        last = self.store.stream_version("counter-" + counter)
        return 0 if last is None else last + 1

    def _increment(self, counter: str, tracking: Tracking) -> None:
        try:
            self.store.append_batch(
                [("counter-" + counter, [("Incremented", b"")])],
                consumer=(tracking.application_name, tracking.notification_id),
            )
        except foldlog.FoldlogError as e:
            raise translate(e) from e

    def get_created_event_counter(self) -> int:
        return self._count("created")

    def get_subsequent_event_counter(self) -> int:
        return self._count("subsequent")

    def incr_created_event_counter(self, tracking: Tracking) -> None:
        self._increment("created", tracking)

    def incr_subsequent_event_counter(self, tracking: Tracking) -> None:
        self._increment("subsequent", tracking)


class TestEventCountersView(TemporaryStores, projection_cases.EventCountersViewTestCase):
    def construct_event_counters_view(self) -> FoldlogEventCounters:
        view = self.factory.tracking_recorder(FoldlogEventCounters)
        assert isinstance(view, FoldlogEventCounters)
        return view


class ProjectionEnvironment(TestCase):
    """The projection runners take their environment from ``env``."""

    env: ClassVar[dict[str, str]]

    def setUp(self) -> None:
        self.foldlog_path = tempfile.mkdtemp(prefix="foldlog-es-")
        self.env: dict[str, Any] = {"PERSISTENCE_MODULE": MODULE, Factory.FOLDLOG_PATH: self.foldlog_path}
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        shutil.rmtree(self.foldlog_path, ignore_errors=True)


class TestAggregateEventCountersProjection(
    ProjectionEnvironment, projection_cases.AggregateEventCountersProjectionTestCase
):
    view_class = FoldlogEventCounters


class TestEventSourcedProjection(ProjectionEnvironment, projection_cases.EventSourcedProjectionTestCase):
    pass


class TestDCBRecorder(TemporaryStores, dcb_cases.DCBRecorderTestCase):
    def create_recorder(self) -> FoldlogDCBRecorder:
        recorder = self.factory.dcb_recorder()
        assert isinstance(recorder, FoldlogDCBRecorder)
        return recorder

    def test_append_read(self) -> None:
        self._test_append_read(self.create_recorder())

    def test_append_subscribe(self) -> None:
        self._test_append_subscribe(self.create_recorder())


class TestTaggedDecisionCountersProjection(
    ProjectionEnvironment, projection_cases.TaggedDecisionCountersProjectionTestCase
):
    """A ``DCBApplication`` and the view of its projection, both found by ``PERSISTENCE_MODULE`` in the same
    module; the application's decisions are encoded by the library's MessagePack mapper."""

    view_class = FoldlogEventCounters

    def setUp(self) -> None:
        super().setUp()
        self.env["MAPPER_TOPIC"] = get_topic(MessagePackMapper)
