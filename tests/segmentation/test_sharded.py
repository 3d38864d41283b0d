"""Sharded, resumable prediction (annotator/segmentation/sharded.py): the shards hold what the Predictor
gives, a killed run predicts only the shards it had not written, and two gloo processes under torchrun
share the shards and write what one process writes. Real images, a real trained network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from annotator.imaging.io import read_image
from annotator.segmentation import sharded
from annotator.segmentation.postprocess import mean_entropy
from annotator.segmentation.predict import Predictor

HELPER = Path(__file__).with_name("ddp_predict.py")
N_IMAGES = sharded.SHARD_IMAGES + 9  # a full shard and a partial one


def sample_images(sample_data: Path, n: int = N_IMAGES) -> dict[int, np.ndarray]:
    """``n`` real images of every size the sample has, keyed by made-up ids (not in order of reading)."""
    files = sorted((sample_data / "images").rglob("*.jpg"))[::7][:n]
    assert len(files) == n
    return {1000 + 3 * k: read_image(f) for k, f in enumerate(files)}


def _masks(folder: Path, ids: list[int], networks: int) -> dict[int, list[np.ndarray]]:
    out: dict[int, list[np.ndarray]] = {}
    for shard_ids, results in sharded.read_shards(folder, ids, "masks", networks):
        out.update(zip(shard_ids, results, strict=True))
    return out


def test_shards_hold_the_predictors_masks_and_a_rerun_predicts_only_what_is_missing(tiny_run, sample_data, tmp_path):
    result, _ = tiny_run
    images = sample_images(sample_data)
    ids = list(images)
    predictor = Predictor.from_checkpoint(result.checkpoint_path, batch_size=8)
    loads: list[int] = []

    def load(image_id: int) -> np.ndarray:
        loads.append(image_id)
        return images[image_id]

    key = sharded.job_key([predictor.model_version] * 2, ids, "masks", "eager")
    assert key != sharded.job_key([predictor.model_version] * 2, ids[:-1], "masks", "eager")
    folder = sharded.job_folder(tmp_path, "test", key)
    assert sharded.predict_sharded([predictor, predictor], ids, load, folder, progress=False) == N_IMAGES
    assert sorted(p.name for p in folder.glob("shard-*.npz")) == ["shard-00000.npz", "shard-00001.npz"]
    got = _masks(folder, ids, 2)
    reference = predictor.predict([images[i] for i in ids])
    assert list(got) == ids
    for image_id, ref in zip(ids, reference, strict=True):
        assert [m.shape for m in got[image_id]] == [images[image_id].shape] * 2
        assert all(np.array_equal(m, ref) for m in got[image_id])
    assert sum(int(ref.any()) for ref in reference) > N_IMAGES // 2  # it drew lungs, not empty masks

    # a run killed after its first shard: the second is missing, and a torn file is predicted again
    (folder / "shard-00001.npz").unlink()
    loads.clear()
    assert sharded.predict_sharded([predictor, predictor], ids, load, folder, progress=False) == 9
    assert loads == ids[sharded.SHARD_IMAGES:]
    (folder / "shard-00000.npz").write_bytes(b"torn")
    loads.clear()
    assert sharded.predict_sharded([predictor, predictor], ids, load, folder, progress=False) == sharded.SHARD_IMAGES
    assert loads == ids[:sharded.SHARD_IMAGES]
    assert sharded.predict_sharded([predictor, predictor], ids, load, folder, progress=False) == 0
    assert all(np.array_equal(a, b) for i in ids for a, b in zip(_masks(folder, ids, 2)[i], got[i]))

    # uncertainty: the mean entropy of each image's probability map
    folder = sharded.job_folder(tmp_path, "u", sharded.job_key([predictor.model_version], ids, "uncertainty", "eager"))
    sharded.predict_sharded([predictor], ids, images.__getitem__, folder, output="uncertainty", progress=False)
    scores = dict(pair for shard in sharded.read_shards(folder, ids, "uncertainty", 1) for pair in zip(*shard))
    expected = [mean_entropy(p) for p in predictor.predict_proba([images[i] for i in ids])]
    assert np.allclose([scores[i] for i in ids], expected)
    assert 0 < min(expected) < max(expected) < 1


def test_two_gloo_processes_share_the_shards_and_write_what_one_writes(tiny_run, sample_data, tmp_path):
    result, _ = tiny_run
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1",
           "ANNOTATOR_SAMPLE_DATA": str(sample_data), "ANNOTATOR_DEVICE": "cpu"}
    runs = {}
    for name, launcher in (("one", [sys.executable]),
                           ("two", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node=2"])):
        out = tmp_path / name
        done = subprocess.run([*launcher, str(HELPER), str(result.checkpoint_path), str(out)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
        runs[name] = json.loads((out / "rank-0.json").read_text())
    assert runs["one"]["predicted"] == runs["two"]["predicted"] == N_IMAGES
    worker = json.loads((tmp_path / "two" / "rank-1.json").read_text())
    assert worker["jobs"] == 1 and worker["images"] == N_IMAGES - sharded.SHARD_IMAGES  # rank 1 took shard 1
    ids = runs["one"]["ids"]
    one, two = _masks(Path(runs["one"]["folder"]), ids, 2), _masks(Path(runs["two"]["folder"]), ids, 2)
    assert all(np.array_equal(a, b) for i in ids for a, b in zip(one[i], two[i]))
