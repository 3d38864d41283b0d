"""The campaign as a team sees it (`annotator campaign status`): per queue what is open, per person their
decisions by kind, median seconds per decision (Label Studio's lead time), share accepted unedited, masks
made; agreement of double reads; the refused decisions. A coordinator answers "who is behind, who
disagrees, how long is left" from it. Also drawn as a PNG (per-person bars, agreement over rounds)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from statistics import median

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Decision, Mask, Person, Task
from workflows.agreement import agreement


def _person_row(session: Session, person: Person) -> dict:
    who = Decision.actor == person.email if person.ls_user_id is None else Decision.ls_user_id == person.ls_user_id
    rows = list(session.execute(select(Decision.id, Decision.decision, Decision.lead_time_s, Task.queue)
                                .join(Task, Task.id == Decision.task_id, isouter=True)
                                .where(who, Decision.valid.is_(True), Decision.refused.is_(False))))
    kinds = Counter(r.decision for r in rows)
    leads = [r.lead_time_s for r in rows if r.lead_time_s is not None]
    reviews = [r for r in rows if r.queue == "ra_review"]
    masks = session.scalar(select(func.count(Mask.id)).where(Mask.decision_id.in_([r.id for r in rows]))) if rows else 0
    refused = session.scalar(select(func.count(Decision.id)).where(who, Decision.refused.is_(True))) or 0
    return {
        "email": person.email, "name": person.name, "role": person.role, "active": person.active,
        "ls_user_id": person.ls_user_id, "decisions": dict(sorted(kinds.items())), "total": len(rows),
        "median_lead_s": round(median(leads), 2) if leads else None,
        "accepted_unedited_share": round(sum(r.decision == "accept" for r in reviews) / len(reviews), 4)
        if reviews else None,
        "masks_made": int(masks or 0), "refused": int(refused),
    }


def refused_decisions(session: Session) -> list[dict]:
    rows = session.execute(select(Decision, Task.queue).join(Task, Task.id == Decision.task_id, isouter=True)
                           .where(Decision.refused.is_(True)).order_by(Decision.id))
    return [{"image_id": d.image_id, "round_id": d.round_id, "queue": queue, "ls_task_id": d.ls_task_id,
             "ls_annotation_id": d.ls_annotation_id, "ls_user_id": d.ls_user_id, "actor": d.actor,
             "decision": d.decision, "reason": d.message} for d, queue in rows]


def md_verdicts(session: Session) -> list[dict]:
    """Stage IV: each author's masks against the MD's verdict (verified as they were, or corrected), per
    person or source that made the mask the MD was shown."""
    rows = [(decision, (payload or {}).get("mask_id")) for decision, payload in session.execute(
        select(Decision.decision, Task.payload).join(Task, Task.id == Decision.task_id)
        .where(Task.queue == "md_verify", Decision.valid.is_(True), Decision.refused.is_(False)))]
    authors = dict(session.execute(select(Mask.id, Mask.author).where(Mask.id.in_({m for _, m in rows if m}))).all())
    tally: dict[str, Counter] = {}
    for decision, mask_id in rows:
        tally.setdefault(authors.get(mask_id) or "unknown", Counter())[decision] += 1
    return [{"author": author, "judged": sum(c.values()), "verified": c["verified"], "corrected": c["corrected"],
             "verified_share": round(c["verified"] / sum(c.values()), 4)} for author, c in sorted(tally.items())]


def campaign_status(session: Session) -> dict:
    open_tasks = dict(session.execute(select(Task.queue, func.count(Task.id)).where(Task.status == "open")
                                      .group_by(Task.queue).order_by(Task.queue)).all())
    people = [_person_row(session, p) for p in session.scalars(select(Person).order_by(Person.role, Person.email))]
    refused = refused_decisions(session)
    return {"open_tasks": open_tasks, "people": people, "agreement": agreement(session), "refused": refused,
            "refused_count": len(refused), "md_verdicts": md_verdicts(session)}


def write_team_png(report: dict, path: Path) -> Path:
    """Per-person decisions by kind (stacked bars) and kappa / DSC of double reads per round."""
    from annotator.evaluation.plots import _pyplot, save_png

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    people = report["people"]
    kinds = sorted({k for p in people for k in p["decisions"]})
    bottom = [0] * len(people)
    for kind in kinds:
        values = [p["decisions"].get(kind, 0) for p in people]
        left.bar(range(len(people)), values, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    left.set_xticks(range(len(people)), [f"{p['email'].split('@')[0]}\n{p['role']}" for p in people], fontsize=8)
    left.set_ylabel("decisions")
    left.set_title("decisions per person")
    if kinds:
        left.legend(fontsize=8)
    rounds = report["agreement"]["rounds"]
    xs = [str(r["round_id"]) for r in rounds]
    for key, marker in (("kappa", "o"), ("dsc", "s")):
        right.plot(xs, [r[key] if r[key] is not None else float("nan") for r in rounds], marker=marker, label=key)
    right.set_ylim(-0.05, 1.05)
    right.set_xlabel("round id")
    right.set_title("agreement of double reads")
    right.legend(fontsize=8)
    fig.suptitle(f"refused decisions: {report['refused_count']}")
    return save_png(fig, path, dpi=100)


def team_markdown(report: dict) -> list[str]:
    """The team's section of a Markdown report: per person, agreement per round, refused decisions."""
    def cell(value) -> str:
        return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    lines = ["## The team", "", "| person | role | decisions | median lead (s) | accepted unedited | masks | refused |",
             "|---|---|---|---|---|---|---|"]
    for p in report["people"]:
        kinds = ", ".join(f"{k} {n}" for k, n in p["decisions"].items()) or "-"
        lines.append(f"| {p['email']} | {p['role']} | {kinds} | {cell(p['median_lead_s'])} | "
                     f"{cell(p['accepted_unedited_share'])} | {p['masks_made']} | {p['refused']} |")
    a = report["agreement"]
    lines += ["", f"Agreement of double reads: {a['pairs']} pair(s), Cohen's kappa {cell(a['kappa'])}, mean DSC "
                  f"{cell(a['dsc'])}", "", "| round id | pairs | kappa | DSC |", "|---|---|---|---|"]
    lines += [f"| {r['round_id']} | {r['pairs']} | {cell(r['kappa'])} | {cell(r['dsc'])} |" for r in a["rounds"]]
    if report.get("md_verdicts"):
        lines += ["", "Stage IV: each author's masks against the MD's verdict", "",
                  "| made by | judged | verified | corrected | verified share |", "|---|---|---|---|---|"]
        lines += [f"| {v['author']} | {v['judged']} | {v['verified']} | {v['corrected']} | {v['verified_share']:.3f} |"
                  for v in report["md_verdicts"]]
    lines += ["", f"Refused decisions: {report['refused_count']}"]
    lines += [f"- image {r['image_id']} ({r['queue']}) by {r['actor']}: {r['reason']}" for r in report["refused"]]
    return lines


def write_team_report(session: Session, out_dir: Path) -> dict:
    """team.json and team.png in ``out_dir``, and the team's section appended to its campaign.md."""
    import json

    report = campaign_status(session)
    out_dir.mkdir(parents=True, exist_ok=True)
    report["png"] = str(write_team_png(report, out_dir / "team.png"))
    (out_dir / "team.json").write_text(json.dumps(report, indent=2, default=str))
    markdown = out_dir / "campaign.md"
    if markdown.exists():
        markdown.write_text(markdown.read_text() + "\n" + "\n".join(team_markdown(report)) + "\n")
    return report
