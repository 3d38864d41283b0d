"""Batched, sharded, resumable prediction over torch.distributed: what ``round next`` (pre-labelling and
uncertainty scoring) and ``stage3 run`` (six networks x every remaining image) predict.

A job is some networks x some images, cut into shards of ``SHARD_IMAGES`` images in the order given.
Each shard's result is written, compressed and atomically, to ``<folder>/shard-NNNNN.npz``: every
network's post-processed mask of every image (bit-packed), or one uncertainty score per image. The
folder is named by a hash of the networks' versions, the image ids, the output and the backend, so a
killed run started again finds its shards done and predicts only the missing ones. The caller drops the
folder once the rows made from it have committed (``discard_after_commit``).

Under torchrun (``annotator --nproc N``) rank 0 runs the command: it broadcasts the job (the checkpoint
files' bytes, so a worker on another machine needs no copy of the workspace), then hands the missing
shards out in waves of one per rank (``scatter_object_list`` of the shard's pixels over the control
group); each rank predicts its shard in batches and rank 0 gathers the results and alone writes them.
One process does the same shards by itself.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.distributed as dist

from annotator.crashpoint import crash_point
from annotator.durability import write_bytes_durably
from annotator.errors import ModelError
from annotator.progress import progress_bar
from annotator.segmentation import distributed
from annotator.segmentation.postprocess import mean_entropy

log = logging.getLogger(__name__)

SHARD_IMAGES = 64  # images per shard: the unit of resumption and of the work a rank takes at once
OUTPUTS = ("masks", "uncertainty")
END = "end"  # the scatter item that ends a worker's part in a job


@dataclass(frozen=True)
class JobSpec:
    """What every rank needs to load the networks (picklable: rank 0 broadcasts it)."""

    checkpoints: tuple[bytes, ...]  # the checkpoint files, in the order of the outputs
    output: str
    backend: str
    batch_size: int


def job_key(model_versions: Sequence[str], image_ids: Sequence[int], output: str, backend: str) -> str:
    h = hashlib.sha256()
    h.update("|".join(model_versions).encode())
    h.update(f"|{output}|{backend}|{SHARD_IMAGES}|".encode())
    h.update(np.asarray(image_ids, dtype=np.int64).tobytes())
    return h.hexdigest()[:20]


def job_folder(workspace: Path, label: str, key: str) -> Path:
    return Path(workspace) / "cache" / "predictions" / f"{label}-{key}"


def _shard_path(folder: Path, index: int) -> Path:
    return folder / f"shard-{index:05d}.npz"


def _pack(ids: Sequence[int], results: list, output: str) -> bytes:
    """A shard's results as npz bytes: ``results`` is per image a list of masks (one per network), or a float."""
    arrays: dict[str, np.ndarray] = {"ids": np.asarray(ids, dtype=np.int64)}
    if output == "uncertainty":
        arrays["uncertainty"] = np.asarray(results, dtype=np.float64)
    else:
        for i, masks in enumerate(results):
            for j, mask in enumerate(masks):
                arrays[f"m{i}_{j}"] = np.packbits(mask > 0)
                arrays[f"s{i}_{j}"] = np.asarray(mask.shape, dtype=np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _unpack(path: Path, output: str, networks: int) -> tuple[list[int], list]:
    with np.load(path) as data:
        ids = [int(i) for i in data["ids"]]
        if output == "uncertainty":
            return ids, [float(u) for u in data["uncertainty"]]
        results = []
        for i in range(len(ids)):
            masks = []
            for j in range(networks):
                shape = tuple(int(s) for s in data[f"s{i}_{j}"])
                bits = np.unpackbits(data[f"m{i}_{j}"], count=shape[0] * shape[1])
                masks.append((bits.reshape(shape) * np.uint8(255)).astype(np.uint8))
            results.append(masks)
        return ids, results


def _shard_done(path: Path, ids: Sequence[int]) -> bool:
    """A shard file that reads and holds exactly these ids (a torn or foreign file is predicted again)."""
    if not path.is_file():
        return False
    try:
        with np.load(path) as data:
            return [int(i) for i in data["ids"]] == list(ids)
    except Exception:  # a file that does not read is only a cache entry: predict the shard again
        log.warning("%s does not read; predicting its shard again", path)
        return False


class _Networks:
    """The job's networks loaded on this rank."""

    def __init__(self, predictors: list, output: str):
        self.predictors = predictors
        self.output = output

    @classmethod
    def from_spec(cls, spec: JobSpec, device: str, folder: Path) -> _Networks:
        from annotator.segmentation.predict import Predictor

        predictors = []
        for i, data in enumerate(spec.checkpoints):
            path = folder / f"network-{i}.pt"
            path.write_bytes(data)
            predictors.append(Predictor.from_checkpoint(path, backend=spec.backend, device=device,
                                                        batch_size=spec.batch_size, on_refuse="eager"))
        return cls(predictors, spec.output)

    def run(self, grays: list[np.ndarray]) -> list:
        """Per image: the networks' masks (a list), or the first network's uncertainty (a float)."""
        if self.output == "uncertainty":
            return [mean_entropy(p) for p in self.predictors[0].predict_proba(grays)]
        per_network = [p.predict(grays) for p in self.predictors]
        return [[masks[i] for masks in per_network] for i in range(len(grays))]


def predict_sharded(predictors: Sequence, image_ids: Sequence[int], load: Callable[[int], np.ndarray],
                    folder: Path, *, output: str = "masks", description: str = "predicting",
                    progress: bool = True) -> int:
    """Predict every missing shard of the job into ``folder`` (rank 0, or the only process); returns how
    many images were predicted now (0 when a previous run finished them all). ``predictors`` are the
    loaded networks (``Predictor``s from checkpoint files); ``load(image_id)`` gives an image's pixels."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if not predictors:
        raise ModelError("a prediction job needs at least one network")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shards = [list(image_ids[s:s + SHARD_IMAGES]) for s in range(0, len(image_ids), SHARD_IMAGES)]
    missing = [k for k, ids in enumerate(shards) if not _shard_done(_shard_path(folder, k), ids)]
    done_before = len(image_ids) - sum(len(shards[k]) for k in missing)
    if done_before:
        log.info("%s: %d of %d images were predicted by an earlier run", description, done_before, len(image_ids))
    if not missing:
        return 0
    ctx = distributed.context()
    local = _Networks(list(predictors), output)
    world = ctx.world_size if ctx is not None else 1
    if ctx is not None:
        for p in predictors:
            if p.checkpoint is None or p.checkpoint.path is None:
                raise ModelError(f"{p.model_version}: sharing a prediction needs its checkpoint file")
        spec = JobSpec(tuple(Path(p.checkpoint.path).read_bytes() for p in predictors), output,
                       predictors[0].backend, predictors[0].batch_size)
        ctx.broadcast(("predict", spec))
    predicted = 0
    with progress_bar(description, total=len(image_ids), completed=done_before, enabled=progress,
                      unit="images") as bar:
        for w in range(0, len(missing), world):
            wave = missing[w:w + world]
            items = [(k, shards[k], [load(i) for i in shards[k]]) for k in wave]
            if ctx is None:
                results = [local.run(items[0][2])]
            else:
                mine = _scatter(ctx, items + [None] * (world - len(items)))
                results = _gather(ctx, local.run(mine[2]) if mine is not None else None)[:len(items)]
            for (k, ids, _), result in zip(items, results, strict=True):
                write_bytes_durably(_shard_path(folder, k), _pack(ids, result, output))
                predicted += len(ids)
                bar.advance(len(ids))
                crash_point("predict.after_shard")
    if ctx is not None:
        _scatter(ctx, [END] * world)
    return predicted


def predict_job(session, workspace: Path, label: str, predictors: Sequence, image_ids: Sequence[int],
                load: Callable[[int], np.ndarray], *, output: str = "masks", description: str = "predicting",
                progress: bool = True) -> Iterator[tuple[list[int], list]]:
    """A job as the protocol runs it: its folder in the workspace's cache named by ``job_key``, every missing
    shard predicted, the folder dropped once ``session`` commits; returns the shards' results (``read_shards``,
    read as they are iterated)."""
    backend = predictors[0].backend if predictors else ""
    folder = job_folder(workspace, label, job_key([p.model_version for p in predictors], image_ids, output, backend))
    predict_sharded(predictors, image_ids, load, folder, output=output, description=description, progress=progress)
    discard_after_commit(session, folder)
    return read_shards(folder, image_ids, output, len(predictors))


def read_shards(folder: Path, image_ids: Sequence[int], output: str, networks: int) -> Iterator[tuple[list[int], list]]:
    """The job's results, shard by shard (ids, per image the masks or the score), in the given order."""
    for k in range(0, (len(image_ids) + SHARD_IMAGES - 1) // SHARD_IMAGES):
        yield _unpack(_shard_path(Path(folder), k), output, networks)


def discard_after_commit(session, folder: Path) -> None:
    """Remove the job's folder once ``session`` commits (its rows hold the results by then); a rollback
    keeps it, so the next run reads the shards instead of predicting them again."""
    from sqlalchemy import event

    def _drop(_session) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    event.listen(session, "after_commit", _drop, once=True)


# -- collectives on the control group (gloo: plain objects travel on any device) ---------------------
def _scatter(ctx, items: list):
    box = [None]
    dist.scatter_object_list(box, items if ctx.is_main else None, src=0, group=ctx.control)
    return box[0]


def _gather(ctx, result) -> list:
    out = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(result, out, dst=0, group=ctx.control)
    return out


def run_job(ctx, message) -> int:
    """A worker rank's side of one ``predict_sharded`` job: predict the shard it is handed, wave by wave,
    until rank 0 says the job is over; returns how many images this rank predicted."""
    _, spec = message
    count = 0
    with tempfile.TemporaryDirectory(prefix="annotator-predict-") as tmp:
        networks = _Networks.from_spec(spec, ctx.device, Path(tmp))
        while (item := _scatter(ctx, [])) != END:
            _gather(ctx, networks.run(item[2]) if item is not None else None)
            count += len(item[1]) if item is not None else 0
    return count
