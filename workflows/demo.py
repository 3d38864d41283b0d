"""`annotator demo`: the whole protocol on the sample set, with simulated people acting through a real
Label Studio. Every step is one of the commands a user runs by hand (import, stage1 run, round next /
sync / close with the MD queue, stage3 run / sync / close, stage4 sample / sync, export): the demo opens
one transaction per step, as that command does, and calls the same stage function in it, so a demo killed
at any point resumes where it stopped when run again.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable

import requests

from annotator.config import Settings
from annotator.credentials import with_workspace_secrets
from annotator.errors import AnnotatorError
from annotator.ingest.importer import import_items, list_items
from annotator.labelstudio.client import LabelStudio
from annotator.labelstudio.queue import Queue
from annotator.labelstudio.server import start_server, stop_server
from annotator.model_registry import working_model
from annotator.workspace import init_workspace
from db.engine import session_scope
from db.queries import count_in_states
from workflows.campaign import act
from workflows.engine import replay_all
from workflows.export import export_covid_qu_ex
from workflows.queues import push_queue, sync_queues
from workflows.report import write_report
from workflows.simulator import ScriptedPeople, SimulationPolicy
from workflows.stage1 import run_stage1
from workflows.stage2 import close_round, next_round, open_round, stage2_mask_count, undecided
from workflows.stage3 import close_stage3, run_stage3, stage3_round
from workflows.stage4 import finish, sample
from workflows.team_report import write_team_report
from workflows.team_sim import ScriptedTeam, ensure_team

log = logging.getLogger(__name__)

MAX_MD_PASSES = 3


def _work_queue(settings: Settings, ls, queue: str, people) -> None:
    """`push` the queue's tasks, the simulated people work them (`simulate`), read them back (`sync`)."""
    push_queue(settings, ls, queue)
    with session_scope(settings.database_url) as session:
        act(session, settings, ls, queue, people)
    sync_queues(settings, ls, (queue,))


def _review_cycle(settings: Settings, ls, people) -> None:
    """The RAs review the open round; unsure cases go to the MDs, whose advice the RAs then follow."""
    _work_queue(settings, ls, Queue.RA_REVIEW, people)
    for _ in range(MAX_MD_PASSES):
        for queue in (Queue.MD_ADVICE, Queue.RA_ADJUST):
            _work_queue(settings, ls, queue, people)
        with session_scope(settings.database_url) as session:
            if undecided(session, open_round(session)) == 0:
                return


def _round(settings: Settings, ls, people, *, size: int, seed: int, target: int, preset: str,
           say: Callable[[str], None]) -> dict:
    """One Stage II round as `round next`, the review cycle, then `round close`."""
    with session_scope(settings.database_url) as session:
        rep = next_round(session, settings, size=size, seed=seed, require_reference=True, target=target)
    if not rep["resumed"]:
        say(f"  round {rep['number']}: {rep['size']} images predicted by {rep['model_version']} "
            f"({rep['qc_flagged']} flagged by QC)")
    _review_cycle(settings, ls, people)
    with session_scope(settings.database_url) as session:
        return close_round(session, settings, preset, progress=True)


def start_backend(settings: Settings) -> subprocess.Popen | None:
    """Our ML backend in its own process (it outlives the demo when Label Studio is left serving)."""
    base = f"http://{settings.backend_host}:{settings.backend_port}"
    url = f"{base}/health"
    try:
        serving = requests.get(url, timeout=1).ok
    except requests.RequestException:
        serving = False
    if serving:  # ours (a run before this one) if it takes this workspace's token
        try:
            refused = requests.get(f"{base}/versions", timeout=5,
                                   headers={"Authorization": f"Token {settings.backend_token}"}).status_code == 401
        except requests.RequestException as exc:
            raise AnnotatorError(f"something answers at {url} but not as our ML backend ({exc})") from exc
        if refused:
            raise AnnotatorError(f"another ML backend serves {base}: it refuses this workspace's token (one of "
                                 "another workspace?); stop it, or set ANNOTATOR_BACKEND_PORT")
        return None  # already serving
    log_path = settings.workspace_path / "backend.log"
    cmd = [sys.executable, "-m", "annotator.cli.main", "--workspace", str(settings.workspace_path), "serve", "backend"]
    proc = subprocess.Popen(cmd, stdout=log_path.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AnnotatorError(f"the ML backend exited at start (code {proc.returncode}); see {log_path}")
        try:
            if requests.get(url, timeout=1).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.5)
    proc.terminate()
    raise AnnotatorError(f"the ML backend did not answer at {url} within 90 s; see {log_path}")


def run_demo(settings: Settings, *, round_size: int = 50, target: int = 200, preset: str = "demo",
             serve: bool = True, say: Callable[[str], None] = print, seed: int = 0, team: bool = True) -> dict:
    started = time.monotonic()
    data = settings.sample_data_path
    if data is None:
        raise AnnotatorError("no sample set found; set ANNOTATOR_SAMPLE_DATA to the folder holding manifest.csv")
    init_workspace(settings)
    settings = with_workspace_secrets(settings)  # the random secrets init wrote (env values still win)
    url = settings.database_url
    people = ScriptedPeople(SimulationPolicy(accept_dsc=settings.accept_dsc, seed=seed))
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> None:
        timings[name] = round(time.monotonic() - t0, 1)
        say(f"  {name}: {timings[name]:.0f} s")

    say("== import the sample set")  # `data import`
    t0 = time.monotonic()
    with session_scope(url) as session:
        summary = import_items(session, settings, list_items(data, "manifest"), "manifest", checkpoint=session.commit)
    say(f"  {summary.images_added} images added, {summary.images_known} already there, "
        f"{dict(summary.masks_added)} masks added, {len(summary.failures)} failures")
    lap("import", t0)

    say("== Label Studio")  # `labelstudio start`
    t0 = time.monotonic()
    info = start_server(settings)
    ls = LabelStudio(settings)
    say(f"  {info.url} (user {settings.labelstudio_username}; password: `annotator labelstudio credentials`)")
    lap("labelstudio", t0)
    if team:  # `people add` for each simulated person; each then works with their own account and token
        with session_scope(url) as session:
            people = ScriptedTeam(ensure_team(session, settings, ls, seed=seed))
        say("  team: " + ", ".join(f"{m.email} ({m.role})" for m in people.members))

    say(f"== Stage I: three U-Net variants, preset {preset}")  # `stage1 run`
    t0 = time.monotonic()
    with session_scope(url) as session:
        result = run_stage1(session, settings, preset=preset, progress=True)
    for v in result.variants:
        say(f"  {v.spec}: val DSC {v.metrics.get('val_dsc', float('nan')):.4f}, held-out test DSC "
            f"{v.metrics.get('test_dsc', float('nan')):.4f}{'  <- working' if v.is_working else ''}")
    lap("stage1", t0)

    backend = None
    try:
        backend = start_backend(settings)  # `serve backend --connect`
        backend_url = f"http://{settings.backend_host}:{settings.backend_port}"
        ls.connect_backend(ls.ensure_project(Queue.RA_REVIEW), backend_url, settings.backend_token)
    except AnnotatorError as exc:  # the queues work without it; predictions are imported inline
        say(f"  (ML backend not connected: {exc})")

    say(f"== Stage II: rounds of {round_size} until {target} masks")
    t0 = time.monotonic()
    while True:
        with session_scope(url) as session:
            made = stage2_mask_count(session)
            if open_round(session) is None and made >= target:
                break
        summary = _round(settings, ls, people, size=round_size, seed=seed + made, target=target, preset=preset, say=say)
        say(f"  round {summary['round']} closed: accepted unedited {summary['accepted_unedited_share']:.0%}, "
            f"DSC prediction->final {summary['prediction_dsc_to_final']:.4f}, decisions {summary['decisions']}, "
            f"validation DSC {summary['val_dsc_before']:.4f} -> {summary['val_dsc']:.4f} "
            + (f"(no fine-tuned epoch beat it: {summary['new_model_version']} stays)" if summary.get("kept_previous")
               else f"(new working network {summary['new_model_version']})"))
    lap("stage2", t0)

    say("== Stage III: six networks, best of six on every remaining image")
    t0 = time.monotonic()
    with session_scope(url) as session:  # `stage3 run`
        s3 = stage3_round(session)
        if s3 is None or s3.status != "closed":
            rep = run_stage3(session, settings, preset, require_reference=True, progress=True)
            say(f"  {rep.candidates} images nominated; networks {', '.join(rep.networks)}"
                + "".join(f"; {n} went on from the working network {v}" for n, v in rep.warm_started.items()))
    _work_queue(settings, ls, Queue.BEST_OF_SIX, people)  # push, `simulate`, `stage3 sync`
    with session_scope(url) as session:  # `stage3 close`
        s3summary = close_stage3(session, settings, preset, progress=True)
        denied = count_in_states(session, ["denied"])
    say(f"  picks {s3summary.get('picks_by_network')}, denied {s3summary.get('denied')}; main network "
        f"{s3summary.get('main_network')} ({s3summary.get('main_model_version')}), "
        f"val DSC {s3summary.get('val_dsc')}")
    if denied:
        say(f"  {denied} denied image(s) go through a Stage II round")
        with session_scope(url) as session:
            made = stage2_mask_count(session)
        _round(settings, ls, people, size=denied, seed=seed, target=made + denied, preset=preset, say=say)
    lap("stage3", t0)

    say("== Stage IV: MD verification of a stratified 20% sample")
    t0 = time.monotonic()
    with session_scope(url) as session:  # `stage4 sample`
        s4 = sample(session, settings, 0.2, seed)
    say(f"  {s4['sampled']} of {s4.get('repository', '?')} repository images sampled")
    _work_queue(settings, ls, Queue.MD_VERIFY, people)  # push, `simulate`, `stage4 sync`
    with session_scope(url) as session:
        splits = finish(session, seed)
    say(f"  splits: {splits['splits']}")
    lap("stage4", t0)

    with session_scope(url) as session:  # `export`, then the campaign report
        exported = export_covid_qu_ex(session, settings, settings.exports_path / "covid-qu-ex")
        replayed = replay_all(session)
        total = time.monotonic() - started
        report = write_report(session, settings.reports_path / "campaign", extra={
            "preset": preset, "round size": round_size, "target": target,
            "final states": replayed, "splits": splits["splits"], "exported": exported.by_split,
            "minutes": round(total / 60, 1), "timings (s)": timings,
            "working network": working_model(session).model_version,
        })
        team_report = write_team_report(session, settings.reports_path / "campaign")
    say(f"== export: {exported.images} images to {exported.out_path}")
    for p in team_report["people"]:
        say(f"  {p['role']} {p['email']}: {p['total']} decisions {p['decisions']}, median {p['median_lead_s']} s, "
            f"accepted unedited {p['accepted_unedited_share']}, refused {p['refused']}")
    agreement = team_report["agreement"]
    say(f"  double reads: {agreement['pairs']} pair(s), kappa {agreement['kappa']}, DSC {agreement['dsc']}; "
        f"refused decisions: {team_report['refused_count']}")
    say(f"== report: {report['markdown']} and {report['png']}")
    if serve:
        say(f"Label Studio keeps serving at {info.url} (user {settings.labelstudio_username}; password: "
            "`annotator labelstudio credentials`); stop it with `annotator labelstudio stop`")
    else:
        stop_server(settings)
        if backend is not None:
            backend.terminate()
    return {"report": report, "splits": splits, "replayed": replayed, "minutes": total / 60, "timings": timings,
            "team": team_report}
