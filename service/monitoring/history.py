"""Every drift report kept on disk: ``<root>/<model>/<report id>/drift.json|drift.html``.

Reports live in files, not in a worker's memory, so every gateway worker answers the same
"latest" and the same history, and a restarted gateway still has them. A report id is the
UTC time of the run (``20261130T104512123456Z``): sortable, and safe in a URL and a path.
The oldest reports beyond ``keep`` per model are deleted.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.monitoring.drift import DriftResult

REPORT_ID = re.compile(r"^\d{8}T\d{12}Z$")
FILES = {"json": "drift.json", "html": "drift.html"}


def report_id(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y%m%dT%H%M%S%fZ")


class ReportHistory:
    def __init__(self, root: Path, keep: int = 500):
        self.root = root
        self.keep = keep

    def save(self, model: str, result: DriftResult, when: float) -> str:
        """Write the report (into a temporary folder renamed when complete); return its id."""
        ident = report_id(when)
        folder = self.root / model / ident
        staging = self.root / model / f".{ident}.tmp"
        result.save(staging)
        staging.rename(folder)
        self._prune(model)
        return ident

    def ids(self, model: str) -> list[str]:
        """Report ids of ``model``, newest first."""
        folder = self.root / model
        if not folder.is_dir():
            return []
        return sorted((p.name for p in folder.iterdir() if REPORT_ID.match(p.name)), reverse=True)

    def path(self, model: str, ident: str, kind: str = "json") -> Path | None:
        if not REPORT_ID.match(ident) or kind not in FILES:
            return None
        path = self.root / model / ident / FILES[kind]
        return path if path.is_file() else None

    def read(self, model: str, ident: str) -> dict[str, Any] | None:
        path = self.path(model, ident)
        return None if path is None else json.loads(path.read_text())

    def latest(self, model: str) -> tuple[str, dict[str, Any]] | None:
        for ident in self.ids(model):
            report = self.read(model, ident)
            if report is not None:
                return ident, report
        return None

    def listing(self, model: str, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` reports, summarised: flag, share, drifted columns, window."""
        out = []
        for ident in self.ids(model)[:limit]:
            report = self.read(model, ident)
            if report is None:
                continue
            out.append(
                {
                    "id": ident,
                    "model": model,
                    "generated_at": report.get("generated_at"),
                    "dataset_drift": report["dataset_drift"],
                    "drift_share": report["drift_share"],
                    "drifted": [n for n, c in report["columns"].items() if c["drift_detected"]],
                    "window": report.get("window"),
                }
            )
        return out

    def _prune(self, model: str) -> None:
        for ident in self.ids(model)[self.keep :]:
            shutil.rmtree(self.root / model / ident, ignore_errors=True)
