"""The files a run leaves behind: Locust's CSV and HTML reports, plus Triton's breakdown.

With ``--csv DIR``::

    DIR/locust_stats.csv          Locust: one row per request name + Aggregated (measured interval)
    DIR/locust_stats_history.csv  Locust: a row per second and name, warm-up included
    DIR/locust_failures.csv       Locust: failures by name and error
    DIR/locust_exceptions.csv     Locust: exceptions raised inside users
    DIR/triton_breakdown.csv      Triton: per ensemble and step, queue/compute ms, executions, avg batch
    DIR/sla.csv                   the SLA checks (name, metric, limit, measured, result)
    DIR/summary.json              all of the above in one document, with the run's settings

With ``--html FILE``: Locust's HTML report, with Triton's breakdown (and the SLA
and count tables) appended as a section at the end of the page.

Importing this module imports Locust (and so its gevent monkey-patching).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import gevent
from locust.html import get_html_report
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

from tritonize.loadtest import triton

PREFIX = "locust"


class LocustCsv:
    """Locust's own CSV writer, running during the test; ``finish`` writes the final state."""

    def __init__(self, environment: Any, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.writer = StatsCSVFileWriter(environment, PERCENTILES_TO_REPORT, str(directory / PREFIX),
                                         full_history=True)
        self.greenlet = gevent.spawn(self.writer.stats_writer)

    def finish(self) -> List[Path]:
        self.greenlet.kill(block=True)
        self.writer.close_files()
        base = self.writer.base_filepath
        with open(base + "_stats.csv", "w", newline="", encoding="utf-8") as handle:
            self.writer.requests_csv(csv.writer(handle))
        with open(base + "_failures.csv", "w", newline="", encoding="utf-8") as handle:
            self.writer.failures_csv(csv.writer(handle))
        with open(base + "_exceptions.csv", "w", newline="", encoding="utf-8") as handle:
            self.writer.exceptions_csv(csv.writer(handle))
        with open(self.writer.stats_history_file_name(), "a", newline="", encoding="utf-8") as handle:
            self.writer._stats_history_data_rows(csv.writer(handle), time.time())
        return [Path(base + suffix) for suffix in ("_stats.csv", "_stats_history.csv", "_failures.csv",
                                                   "_exceptions.csv")]


def write_sla_csv(rows: List[Dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "metric", "limit", "measured", "result", "note"])
        writer.writeheader()
        writer.writerows(rows)


def write_html(environment: Any, path: Path, result: Optional[triton.Breakdown], sla_text: str,
               counts_text: str) -> None:
    """Locust's HTML report, with Triton's breakdown appended to the page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(get_html_report(environment, show_download_link=False), encoding="utf-8")
    if result is not None:
        section = triton.breakdown_html(result, sla_text, counts_text)
        if not triton.append_to_locust_html(path, section):  # pragma: no cover - Locust's page always has a body
            triton.write_html(result, path.with_suffix(".triton.html"), sla_text, counts_text)
