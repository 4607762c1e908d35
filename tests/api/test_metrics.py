"""GET /metrics: the context's registry in the Prometheus text format."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.context import AppContext
from collector.metrics import IngestMetrics


def test_metrics_in_prometheus_text_format(client: TestClient, ctx: AppContext) -> None:
    metrics = IngestMetrics(ctx.registry)
    metrics.messages_in.inc(3)
    metrics.dead_letters.labels(reason="not_json").inc()
    metrics.queue_depth.set(12)

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    lines = response.text.splitlines()
    assert "parkguard_messages_in_total 3.0" in lines
    assert 'parkguard_dead_letters_total{reason="not_json"} 1.0' in lines
    assert "parkguard_queue_depth 12.0" in lines
    assert "# TYPE parkguard_batch_commit_seconds histogram" in lines


def test_metrics_in_openmetrics_when_asked(client: TestClient, ctx: AppContext) -> None:
    IngestMetrics(ctx.registry).messages_in.inc()
    response = client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    assert "parkguard_messages_in_total 1.0" in response.text
