"""The campaign report: per round the share accepted unedited, the mean DSC of the predictions to the
final masks, the working network's validation DSC, decisions by kind and the people's minutes; written as
CSV, Markdown and PNG charts."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Model, Round
from workflows.simulator import SimulationPolicy

COLUMNS = ("stage", "round", "images", "source", "accepted_unedited_share", "prediction_dsc_to_final", "val_dsc",
           "accept", "reject", "unsure", "exclude", "ra_minutes", "md_minutes", "minutes_saved_share")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def campaign_rows(session: Session, policy: SimulationPolicy | None = None) -> list[dict]:
    """One row per closed Stage II round (and Stage III), oldest first."""
    policy = policy or SimulationPolicy()
    scratch_s = policy.look_s + policy.edit_s_per_share  # drawing a mask from nothing
    rows = []
    for r in session.scalars(select(Round).where(Round.stage.in_((2, 3))).order_by(Round.id)):
        s = r.summary or {}
        decisions = s.get("decisions", {})
        ra = s.get("ra_minutes")
        reviews = s.get("reviews") or r.size
        saved = None
        if ra is not None and reviews:
            saved = 1.0 - (ra * 60.0) / (reviews * scratch_s)
        source = "all remaining" if r.stage == 3 else "pool"
        if r.stage == 2 and s.get("from_stage3_denied"):
            source = "Stage III denied" if s["from_stage3_denied"] == r.size else "pool + Stage III denied"
        rows.append({
            "stage": r.stage, "round": r.number, "images": r.size, "source": source,
            "accepted_unedited_share": s.get("accepted_unedited_share"),
            "prediction_dsc_to_final": s.get("prediction_dsc_to_final"), "val_dsc": s.get("val_dsc"),
            "accept": decisions.get("accept", 0), "reject": decisions.get("reject", 0),
            "unsure": decisions.get("unsure", 0), "exclude": decisions.get("exclude", 0),
            "ra_minutes": ra, "md_minutes": s.get("md_minutes"), "minutes_saved_share": saved,
        })
    return rows


def _label(row: dict) -> str:
    """A row's name on the charts: r1, r2, ... (Stage III's rows are its main network)."""
    if row["stage"] == 3:
        return "stage III\nmain"
    return f"r{row['round']}" + ("\n(denied)" if "denied" in row["source"] else "")


def stage1_val_dsc(session: Session) -> float | None:
    """The Stage I working network's validation DSC on the fixed set the rounds use (measured when the
    first round closed); before any round, on Stage I's own validation part."""
    first = session.scalar(select(Round).where(Round.stage == 2, Round.status == "closed").order_by(Round.number).limit(1))
    if first is not None and (first.summary or {}).get("val_dsc_before") is not None:
        return first.summary["val_dsc_before"]
    row = session.scalar(select(Model).where(Model.stage == "stage1").order_by(Model.is_working.desc(), Model.id).limit(1))
    return (row.metrics or {}).get("val_dsc") if row else None


def validation_note(session: Session) -> str:
    last = session.scalar(select(Round).where(Round.stage == 2, Round.status == "closed").order_by(Round.id.desc()).limit(1))
    s = (last.summary or {}) if last else {}
    if not s.get("val_images"):
        return "Validation set: Stage I's held-out part of the seed set."
    return (f"Validation set (fixed from the first round's close on): {s['val_images']} images, "
            f"{s.get('val_collection_images', 0)} of them verified collection images reserved at the first round's "
            "close, the rest Stage I's held-out seed images; none is ever trained on.")


def write_report(session: Session, out_dir: Path, extra: dict | None = None) -> dict:
    """Write campaign.csv, campaign.md and campaign.png; returns the rows and the file paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from annotator.evaluation.tables import markdown_lines

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = campaign_rows(session)
    frame = pd.DataFrame(rows, columns=list(COLUMNS), dtype=object)
    frame.to_csv(out_dir / "campaign.csv", index=False)
    lines = ["# Campaign report", "", *markdown_lines(frame.map(_fmt))]
    base = stage1_val_dsc(session)
    lines += ["", f"Stage I working network validation DSC: {_fmt(base)}", "", validation_note(session), ""]
    for key, value in (extra or {}).items():
        lines.append(f"- {key}: {value}")
    (out_dir / "campaign.md").write_text("\n".join(lines) + "\n")

    stage2 = [r for r in rows if r["stage"] == 2]
    labels = [_label(r) for r in stage2]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.plot(labels, [r["accepted_unedited_share"] or 0 for r in stage2], "o-", label="accepted unedited")
    ax.plot(labels, [r["prediction_dsc_to_final"] or 0 for r in stage2], "s-", label="DSC prediction to final")
    ax.set_ylim(0, 1.02)
    ax.set_title("Stage II rounds")
    ax.legend(loc="lower right")
    ax = axes[1]
    # in protocol order, Stage III's main network included: the swap to it shows where it happens
    points = [("stage I", base)] + [(_label(r), r["val_dsc"]) for r in rows]
    vals = [v for _, v in points]
    ax.plot([label for label, _ in points], [v or 0 for v in vals], "o-", color="tab:green")
    low = min([v for v in vals if v] or [0.9])
    ax.set_ylim(max(0.0, low - 0.02), 1.0)
    ax.set_title("working network: validation DSC")
    ax = axes[2]
    bottom = [0] * len(stage2)
    for kind, colour in (("accept", "tab:green"), ("reject", "tab:orange"), ("unsure", "tab:purple"),
                         ("exclude", "tab:gray")):
        values = [r[kind] for r in stage2]
        ax.bar(labels, values, bottom=bottom, label=kind, color=colour)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax2 = ax.twinx()
    ax2.plot(labels, [r["ra_minutes"] or 0 for r in stage2], "k^--", label="RA minutes")
    ax2.set_ylabel("simulated RA minutes")
    ax.set_title("decisions per round")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "campaign.png", dpi=110)
    plt.close(fig)
    return {"rows": rows, "csv": out_dir / "campaign.csv", "markdown": out_dir / "campaign.md",
            "png": out_dir / "campaign.png", "stage1_val_dsc": base}
