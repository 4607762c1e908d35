"""Prometheus metrics of the ingest path, on their own registry so tests can make fresh ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.messages_in = Counter("parkguard_messages_in", "MQTT messages received", registry=r)
        self.stored = Counter(
            "parkguard_messages_stored", "Messages stored (new)", ["channel"], registry=r
        )
        self.readings_stored = Counter(
            "parkguard_readings_stored", "Metric values stored", registry=r
        )
        self.duplicates = Counter(
            "parkguard_duplicates", "Redelivered messages that were already stored", registry=r
        )
        self.dead_letters = Counter(
            "parkguard_dead_letters", "Rejected messages", ["reason"], registry=r
        )
        self.queue_depth = Gauge(
            "parkguard_queue_depth", "Messages received and not yet committed", registry=r
        )
        self.queue_full = Counter(
            "parkguard_queue_full", "Times the receive queue was full (back-pressure)", registry=r
        )
        self.batch_seconds = Histogram(
            "parkguard_batch_commit_seconds",
            "Time to write and commit one batch",
            registry=r,
            buckets=_COMMIT_BUCKETS,
        )
        self.broker_connected = Gauge(
            "parkguard_broker_connected", "1 while connected to the MQTT broker", registry=r
        )
        self.listener_errors = Counter(
            "parkguard_listener_errors", "Downstream listener failures after commit", registry=r
        )
