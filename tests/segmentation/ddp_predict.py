"""Run by tests/segmentation/test_sharded.py, in one process or under torchrun: rank 0 predicts the sample
images sharded with a trained checkpoint (twice, as two networks); another rank serves as ``annotator
--nproc`` workers do. Each rank writes what it did to OUT_DIR/rank-N.json.

usage: ddp_predict.py CHECKPOINT OUT_DIR
"""

import json
import os
import sys
from pathlib import Path

import torch

from annotator.cli.launch import worker_job
from annotator.segmentation import distributed, sharded
from annotator.segmentation.predict import Predictor

sys.path.insert(0, str(Path(__file__).parent))
from test_sharded import sample_images  # noqa: E402

torch.set_num_threads(1)
checkpoint, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
out_dir.mkdir(parents=True, exist_ok=True)
ctx = distributed.context("cpu")
if ctx is not None and not ctx.is_main:
    images: list[int] = []
    jobs = distributed.serve(ctx, lambda c, m: images.append(worker_job(c, m)))
    (out_dir / f"rank-{ctx.rank}.json").write_text(json.dumps({"jobs": jobs, "images": sum(images)}))
    sys.exit(0)
images = sample_images(Path(os.environ["ANNOTATOR_SAMPLE_DATA"]))
ids = list(images)
predictor = Predictor.from_checkpoint(checkpoint, batch_size=8)
folder = out_dir / "shards"
predicted = sharded.predict_sharded([predictor, predictor], ids, images.__getitem__, folder, progress=False)
(out_dir / "rank-0.json").write_text(json.dumps({"predicted": predicted, "ids": ids, "folder": str(folder)}))
