"""Light core, heavy leaves: the recognition CLI and the torch-free modules import without torch."""

import subprocess
import sys

LIGHT = [
    "annotator.cli.pipeline",
    "annotator.recognition.config",
    "annotator.recognition.dataset",
    "annotator.recognition.preprocessing",
    "annotator.recognition.augmentation",
    "annotator.recognition.quantification",
    "annotator.recognition.infection",
    "annotator.recognition.report",
    "annotator.evaluation.crossval",
    "annotator.evaluation.tables",
    "annotator.evaluation.plots",
    "annotator.evaluation.roc",
    "annotator.evaluation.correlation",
]


def test_light_modules_do_not_import_torch():
    code = "import sys\n" + "".join(f"import {m}\n" for m in LIGHT) + "print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
