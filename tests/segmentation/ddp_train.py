"""Run by tests/segmentation/test_distributed.py, in one process or under torchrun: a tiny U-Net-ResNet18
trained on four real seed images (two for validation) with fixed seeds; each rank writes what it got.

usage: ddp_train.py OUT_DIR EPOCHS (rank 1 passes OUT_DIR/rank-1 as its own folder: it must stay unused)
"""

import dataclasses
import json
import os
import sys
from pathlib import Path

import torch

from annotator.segmentation.presets import PRESETS
from annotator.segmentation.registry import get_spec
from annotator.segmentation.train import train_model

sys.path.insert(0, str(Path(__file__).parent))
from conftest import load_pairs, manifest_rows  # noqa: E402

torch.set_num_threads(1)
out_dir, epochs = Path(sys.argv[1]), int(sys.argv[2])
rank = int(os.environ.get("RANK", "0"))
sample = Path(os.environ["ANNOTATOR_SAMPLE_DATA"])
rows = manifest_rows(sample, ("Montgomery",))[:3] + manifest_rows(sample, ("Shenzhen",))[:3]
pairs = load_pairs(sample, rows)
config = dataclasses.replace(PRESETS["tiny"], batch_size=4, max_epochs=epochs, min_steps_per_epoch=3,
                             verify_fast_paths=False)
own_dir = out_dir if rank == 0 else out_dir / f"rank-{rank}"
result = train_model(get_spec("unet-resnet18"), config, pairs[:4], pairs[4:6], own_dir, progress=False, device="auto")
(out_dir.parent / f"{out_dir.name}-rank-{rank}.json").write_text(json.dumps(
    {"model_version": result.model_version, "metrics": {k: v for k, v in result.metrics.items() if k != "val"},
     "checkpoint": str(result.checkpoint_path)}))
