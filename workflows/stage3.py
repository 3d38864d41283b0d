"""Stage III, collaborative selection: six networks trained on the repository predict every remaining
image; RAs pick the best of six (``m1``..``m6``) on a pre-rendered overlay grid, or deny all. The most
picked network, retrained on the extended repository, becomes the main (working) network; denied images
go back through Stage II rounds.

The six: U-Net, U-Net++ and FPN, each with a ResNet18 and a DenseNet121 encoder, the two lightest encoder
families of the registry (13-30 M parameters), so six trainings fit on two CPU cores, while the pair still
contrasts residual and dense encoders under each decoder. The one of the six with the working network's
architecture trains on from the working network's weights; the other five start from scratch.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.crashpoint import crash_point
from annotator.errors import AnnotatorError
from annotator.labelstudio.grid import write_best_of_six
from annotator.labelstudio.queue import Queue
from annotator.model_registry import checkpoint_file, working_model
from annotator.progress import progress_bar
from annotator.store import add_mask, image_pixels, read_mask_by_id
from db.models import Decision, Image, Model, Round, Task
from workflows import engine
from workflows.handler import Handler
from workflows.retrain import repository_data, train_on_repository
from workflows.stage2 import candidates

if TYPE_CHECKING:
    from annotator.segmentation.presets import TrainConfig

log = logging.getLogger(__name__)

STAGE = 3
PREDICT_BATCH = 16  # images each network predicts per call (the batch its forward pass sees)
NETWORKS: tuple[str, ...] = ("unet-resnet18", "unetplusplus-resnet18", "fpn-resnet18",
                             "unet-densenet121", "unetplusplus-densenet121", "fpn-densenet121")


@dataclass
class Stage3Report:
    round_id: int
    networks: list[str]
    model_versions: list[str]
    candidates: int
    warm_started: dict[str, str] = field(default_factory=dict)  # network -> the working version it went on from


def stage3_round(session: Session) -> Round | None:
    return session.scalar(select(Round).where(Round.stage == STAGE).order_by(Round.id.desc()).limit(1))


def run_stage3(session: Session, settings: Settings, preset: str | TrainConfig, *,
               networks: tuple[str, ...] = NETWORKS, progress: bool = True, limit: int | None = None,
               require_reference: bool = False) -> Stage3Report:
    """Train the six networks (resumable), predict every image of the pool with each, create the
    best-of-six tasks. A second run after success does nothing new."""
    from annotator.segmentation import sharded
    from annotator.segmentation.predict import Predictor

    existing = stage3_round(session)
    if existing is not None:
        versions = existing.summary.get("model_versions", [])
        count = session.scalar(select(func.count(Task.id)).where(Task.round_id == existing.id)) or 0
        return Stage3Report(existing.id, list(networks), versions, count, existing.summary.get("warm_started", {}))
    if len(networks) != 6:
        raise AnnotatorError(f"Stage III compares six networks, {len(networks)} given")
    data = repository_data(session, settings)
    working = working_model(session)
    # the working network's own architecture goes on from its weights (it has seen every round); the other
    # five start from scratch: a comparison of what each can learn from the repository as it stands
    warm = {working.spec: working.model_version} if working is not None and working.spec in networks else {}
    models: list[Model] = []
    with progress_bar("Stage III: training six networks", total=len(networks), enabled=progress,
                      unit="networks") as bar:
        for name in networks:
            models.append(train_on_repository(session, settings, name, preset, stage="stage3", data=data,
                                              init_from=working if name in warm else None, progress=progress))
            bar.advance()
    crash_point("stage3.after_training")
    predictors = [Predictor.from_checkpoint(checkpoint_file(settings.workspace_path, m), backend="eager",
                                            device=settings.device, batch_size=PREDICT_BATCH) for m in models]
    round_ = Round(stage=STAGE, number=1, size=0, strategy="all-remaining", status="open",
                   summary={"networks": list(networks), "model_versions": [m.model_version for m in models],
                            "working_before": working.model_version if working is not None else None,
                            "warm_started": warm})
    session.add(round_)
    session.flush()
    pool = [i for i in candidates(session, require_reference) if i.state == "pool"]
    if limit is not None:
        pool = pool[:limit]
    # six masks per image by sharded, resumable prediction over every process: a killed run predicts only
    # the shards it had not written
    by_id = {i.id: i for i in pool}
    shards = sharded.predict_job(session, settings.workspace_path, "stage3", predictors, list(by_id),
                                 lambda i: image_pixels(settings, by_id[i]),
                                 description="Stage III: six predictions per image", progress=progress)
    for image_ids, per_image in shards:
        for image_id, six in zip(image_ids, per_image, strict=True):
            image = by_id[image_id]
            _nominate(session, settings, round_, models, image, image_pixels(settings, image), six)
    round_.size = len(pool)
    session.flush()
    crash_point("stage3.after_tasks")
    return Stage3Report(round_.id, list(networks), [m.model_version for m in models], len(pool), warm)


def _nominate(session: Session, settings: Settings, round_: Round, models: list[Model], image: Image, gray,
              masks: list) -> None:
    """One image's six masks, its best-of-six grid and task, and its move to the candidates."""
    mask_ids = []
    for model, mask in zip(models, masks, strict=True):
        row = add_mask(session, settings, image, "lung", mask, origin="model", author=f"model:{model.model_version}",
                       model_version=model.model_version, skip_if_same=False)
        mask_ids.append(row.id)
    grid = write_best_of_six(settings, image.id, round_.id, gray, masks)
    grid_rel = str(grid.relative_to(settings.workspace_path))
    engine.move(session, image, "nominate", actor="system", role="system", round_id=round_.id)
    session.add(Task(image_id=image.id, round_id=round_.id, queue=Queue.BEST_OF_SIX, status="open",
                     model_version=None, payload={"mask_ids": mask_ids, "image_path": grid_rel,
                                                  "model_versions": [m.model_version for m in models]}))


def _select(session, settings, task, image, annotation, decision, kw, report):
    k = int(annotation.decision[1:]) - 1
    mask_id = task.payload["mask_ids"][k]
    version = task.payload["model_versions"][k]
    decision.detail = annotation.decision
    decision.model_version = version
    kw = {**kw, "model_version": version}
    engine.move(session, image, "select", **kw)
    add_mask(session, settings, image, "lung", read_mask_by_id(session, settings, mask_id),
             origin="ra_accepted", author=kw["actor"], model_version=version, decision_id=decision.id,
             skip_if_same=False)


def _deny(session, settings, task, image, annotation, decision, kw, report):
    engine.move(session, image, "deny", **kw)


HANDLERS: tuple[Handler, ...] = (
    *(Handler(Queue.BEST_OF_SIX, f"m{k}", ("select",), _select) for k in range(1, 7)),
    Handler(Queue.BEST_OF_SIX, "deny", ("deny",), _deny),
)


def picks(session: Session, round_: Round) -> dict[str, int]:
    rows = session.scalars(select(Decision).where(Decision.round_id == round_.id, Decision.valid.is_(True)))
    counts: Counter = Counter()
    seen: dict[int, str] = {}
    for d in rows:  # the newest decision per image counts
        seen[d.image_id] = d.detail if d.decision in {f"m{k}" for k in range(1, 7)} else "deny"
    counts.update(seen.values())
    return dict(counts)


def close_stage3(session: Session, settings: Settings, preset: str, progress: bool = True) -> dict:
    """Refuse while selections are missing; report the picks; retrain the most-picked network on the
    extended repository and make it the main network."""
    round_ = stage3_round(session)
    if round_ is None:
        raise AnnotatorError("Stage III has not run: `annotator stage3 run` first")
    if round_.status == "closed":
        return round_.summary
    waiting = session.scalar(select(func.count(Image.id)).where(Image.state == "candidates")) or 0
    if waiting:
        raise AnnotatorError(f"Stage III: {waiting} image(s) still wait for a selection; `annotator stage3 sync` first")
    counts = picks(session, round_)
    networks = round_.summary["networks"]
    by_network = {networks[int(k[1:]) - 1]: n for k, n in counts.items() if k != "deny"}
    versions = dict(zip(networks, round_.summary["model_versions"], strict=True))
    val_dsc = {name: (session.scalar(select(Model).where(Model.model_version == v)).metrics or {}).get("val_dsc", 0.0)
               for name, v in versions.items()}
    # the most picked; ties (and a stage where every image was denied) go to the best validation DSC
    best_name = max(networks, key=lambda n: (by_network.get(n, 0), val_dsc[n]))
    parent = session.scalar(select(Model).where(Model.model_version == versions[best_name]))
    main = train_on_repository(session, settings, best_name, preset, stage="stage3-main", init_from=parent,
                               progress=progress, make_working=True)
    crash_point("stage3.close.after_training")
    summary = {**round_.summary, "picks": counts, "picks_by_network": by_network, "denied": counts.get("deny", 0),
               "main_network": best_name, "main_model_version": main.model_version,
               "val_dsc": (main.metrics or {}).get("val_dsc")}
    round_.summary = summary
    round_.status = "closed"
    round_.closed_at = datetime.now(timezone.utc)
    session.flush()
    return summary
