"""Log a report (its HTML and every PNG in it) as artifacts of the sweep's MLflow parent run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from service.mirror.client import open_client
from service.mirror.layout import MlflowLayout
from service.store import Store

REPORT_ARTIFACT_DIR = "report"


def log_report(
    store: Store, sweep_id: int, html: str, images: dict[str, bytes], tracking_uri: str | None = None
) -> str:
    """Upload ``report.html`` and the images under ``report/`` of the sweep's parent run
    (created if the mirror has not made it yet); returns the run id."""
    client = open_client(tracking_uri)
    run_id = MlflowLayout(store, client).sweep_run(sweep_id)
    with tempfile.TemporaryDirectory(prefix="headspec-report-") as tmp:
        folder = Path(tmp)
        (folder / "report.html").write_text(html, encoding="utf-8")
        for name, data in images.items():
            (folder / name).write_bytes(data)
        client.log_artifacts(run_id, str(folder), artifact_path=REPORT_ARTIFACT_DIR)
    return run_id
