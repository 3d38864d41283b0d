"""The full recognition pipeline for one CXR at a time: lung mask, infection mask, detection and
quantification, class probabilities per scheme, Score-CAM. A heavy leaf (loads networks).

``RecognitionPredictor.from_manifest`` loads every network once from the ``pipeline.json`` that
``train-pipeline`` writes; with the parallel configuration the lung and infection networks run
concurrently (two threads; torch releases the GIL in its kernels).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator.errors import ModelError
from annotator.recognition.infection import check_configuration, infection_input
from annotator.recognition.quantification import DETECTION_THRESHOLD, infected_mask, quantify

log = logging.getLogger(__name__)

MANIFEST_NAME = "pipeline.json"
CURRENT_NAME = "current.json"


@dataclass
class Analysis:
    """One image's result: ``to_dict`` is the JSON; the arrays feed the PNG report."""

    name: str
    image: np.ndarray
    lung_mask: np.ndarray
    infection_mask: np.ndarray  # infected lung pixels, {0,255}
    quantification: dict
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)
    predicted: dict[str, str] = field(default_factory=dict)
    saliency: np.ndarray | None = None
    saliency_scheme: str | None = None
    model_versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON of `annotator predict`: lungs by the patient's sides, detection, both class schemes."""
        q = self.quantification
        lungs = {
            side: {"infected_share": round(q[f"infected_share_{side}"], 4), "lung_pixels": q[f"lung_pixels_{side}"]}
            for side in ("right", "left")
        }
        return {
            "image": self.name,
            "covid19": {"detected": q["covid_positive"], "probability": round(q["covid_probability"], 4)},
            "infected_share": round(q["infected_share"], 4),
            "lungs": lungs,
            "severity": q["severity"],
            "lung_pixels": q["lung_pixels"],
            "infected_pixels": q["infected_pixels"],
            "classification": {
                scheme: {"predicted": self.predicted[scheme], "probabilities": {k: round(v, 4) for k, v in p.items()}}
                for scheme, p in self.probabilities.items()
            },
            "model_versions": self.model_versions,
        }


class RecognitionPredictor:
    def __init__(self, lung, infection, infection_configuration: str, classifiers: dict | None = None, scorecam_max_maps: int | None = 64):
        self.lung = lung
        self.infection = infection
        self.configuration = check_configuration(infection_configuration)
        self.classifiers = classifiers or {}
        self.scorecam_max_maps = scorecam_max_maps
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recognition")

    @classmethod
    def from_manifest(cls, path: Path, backend: str = "eager", device: str = "auto") -> RecognitionPredictor:
        from annotator.recognition.classifier import Classifier
        from annotator.segmentation.predict import Predictor

        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"no trained pipeline at {path} ({exc}); run `annotator train-pipeline` first") from exc
        base = path.parent

        def resolve(p: str) -> Path:
            return Path(p) if Path(p).is_absolute() else base / p

        lung = Predictor.from_checkpoint(resolve(manifest["lung"]), backend=backend, device=device, on_refuse="eager")
        infection = Predictor.from_checkpoint(resolve(manifest["infection"]), backend=backend, device=device, on_refuse="eager")
        classifiers = {s: Classifier.from_checkpoint(resolve(p), device) for s, p in manifest.get("classifiers", {}).items()}
        return cls(lung, infection, manifest["infection_configuration"], classifiers, manifest.get("scorecam_max_maps", 64))

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    def segment(self, images: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Post-processed lung masks and infection probabilities of a batch."""
        if self.configuration == "parallel":
            lung_job = self._pool.submit(self.lung.predict, images)
            infection_job = self._pool.submit(self.infection.predict_proba, images)
            return lung_job.result(), infection_job.result()
        lungs = self.lung.predict(images)
        inputs = [infection_input(i, m, "cascaded") for i, m in zip(images, lungs, strict=True)]
        return lungs, self.infection.predict_proba(inputs)

    def analyse(self, image: np.ndarray, name: str = "image", saliency: bool = True) -> Analysis:
        lungs, probs = self.segment([image])
        lung, prob = lungs[0], probs[0]
        q = quantify(lung, prob, DETECTION_THRESHOLD)
        result = Analysis(
            name=name,
            image=image,
            lung_mask=lung,
            infection_mask=infected_mask(lung, prob, DETECTION_THRESHOLD),
            quantification=q.to_dict(),
            model_versions={"lung": self.lung.model_version, "infection": self.infection.model_version},
        )
        for scheme, clf in self.classifiers.items():
            p = clf.predict_proba([image], [lung])[0]
            result.probabilities[scheme] = {c: float(v) for c, v in zip(clf.class_names, p, strict=True)}
            result.predicted[scheme] = clf.class_names[int(np.argmax(p))]
            result.model_versions[f"classifier:{scheme}"] = clf.model_version
        if saliency and self.classifiers:
            from annotator.recognition.scorecam import saliency_for

            scheme, clf = next(iter(self.classifiers.items()))
            result.saliency, _ = saliency_for(clf, image, lung, None, self.scorecam_max_maps)
            result.saliency_scheme = scheme
        return result
