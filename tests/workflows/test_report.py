"""The campaign report's tables, written through a DataFrame: CSV values as stored, Markdown formatted."""

from __future__ import annotations

import csv

from db.engine import session_scope
from db.models import Round
from workflows.report import COLUMNS, write_report


def test_campaign_tables_from_the_rounds(workspace):
    with session_scope(workspace.database_url) as session:
        session.add(Round(stage=2, number=1, size=10, strategy="stratified", status="closed", summary={
            "decisions": {"accept": 6, "reject": 3, "unsure": 1}, "reviews": 10, "accepted_unedited_share": 0.6,
            "prediction_dsc_to_final": 0.91234, "val_dsc": 0.9, "ra_minutes": 5.0, "md_minutes": 0.5}))
        session.add(Round(stage=2, number=2, size=4, strategy="stratified", status="closed",
                          summary={"from_stage3_denied": 4}))  # a round with no figures yet: empty cells, '-'
        session.flush()
        out = write_report(session, workspace.reports_path / "campaign")
    rows = list(csv.DictReader(out["csv"].open()))
    assert list(rows[0]) == list(COLUMNS)
    first, second = rows
    assert (first["stage"], first["round"], first["images"], first["source"]) == ("2", "1", "10", "pool")
    assert (first["accept"], first["reject"], first["unsure"], first["exclude"]) == ("6", "3", "1", "0")
    assert float(first["prediction_dsc_to_final"]) == 0.91234 and float(first["ra_minutes"]) == 5.0
    assert second["source"] == "Stage III denied" and second["val_dsc"] == "" and second["images"] == "4"
    md = out["markdown"].read_text().splitlines()
    assert md[2] == "| " + " | ".join(COLUMNS) + " |"
    assert md[4].startswith("| 2 | 1 | 10 | pool | 0.600 | 0.912 | 0.900 | 6 | 3 | 1 | 0 | 5.000 | 0.500 |")
    assert md[5].startswith("| 2 | 2 | 4 | Stage III denied | - | - | - |")
    assert out["png"].stat().st_size > 10_000
