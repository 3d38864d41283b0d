"""`annotator train-pipeline`: train the lung network, the infection network (parallel and cascaded) and
the configured classifiers on a workspace's store, evaluate them, and write the report folder.

Evaluation (every figure with its n; a class under 5 test images reads "too few to measure"):
- lung and infection segmentation and COVID-19 detection on the test split: Stage IV's verified set
  (``splits`` rows named "protocol", split "test") when it exists, otherwise a stated patient-grouped,
  class-stratified hold-out of ``test_share`` of the images;
- classification by stratified 5-fold cross-validation grouped by patient over every image of the
  scheme's classes, the confusion matrix summed over the test folds;
- quantification against the expert severity scores (Spearman's rho with n).

Resumable: the segmentation engine resumes its own trainings; every classifier fold writes its
checkpoint and out-of-fold probabilities and is skipped on a re-run with the same settings and data.
A heavy leaf: imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.errors import TrainingError
from annotator.evaluation import plots
from annotator.evaluation.correlation import spearman
from annotator.evaluation.crossval import grouped_holdout, stratified_group_folds
from annotator.evaluation.metrics import classification_report, confusion_matrix, segmentation_scores
from annotator.evaluation.roc import one_vs_rest
from annotator.evaluation.tables import (
    MIN_TEST_IMAGES,
    SEG_METRICS,
    Table,
    classification_columns,
    classification_rows,
    percent,
    write_table,
)
from annotator.recognition.classifier import (
    Classifier,
    ClassifierConfig,
    count_parameters,
    get_architecture,
    predict_arrays,
    train_classifier,
)
from annotator.recognition.config import CLASS_SCHEMES, INFECTION_CONFIGURATIONS, PipelineConfig
from annotator.recognition.dataset import Sample, samples_from_store, select_scheme
from annotator.recognition.infection import infection_inputs, training_pairs
from annotator.recognition.predict import CURRENT_NAME, MANIFEST_NAME
from annotator.recognition.preprocessing import prepare
from annotator.recognition.quantification import infected_mask, quantify
from annotator.imaging.io import read_image, read_mask
from annotator.progress import progress_bar

log = logging.getLogger(__name__)

DETECTION_CLASSES = ("COVID-19", "non-COVID")
TABLE_STEMS = {
    "lung": "table_05_lung_segmentation",
    "infection": "table_06_infection_segmentation",
    "detection": "table_08_detection",
    "quantification": "table_quantification_vs_severity",
    "preprocessing": "table_04_preprocessing",
    "covid-pneumonia-normal": "table_09_covid_pneumonia_normal",
    "covid-sars-mers": "table_10_covid_sars_mers",
    "timing": "table_11_inference_time",
    "parameters": "table_12_parameters",
}


@dataclass
class PipelineResult:
    report_dir: Path
    manifest_path: Path
    tables: dict[str, Path] = field(default_factory=dict)  # name -> markdown path
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    headline: dict = field(default_factory=dict)


def _digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]


class PipelineRunner:
    """One run of the pipeline; each ``step_*`` writes its tables and plots into the report folder."""

    def __init__(self, settings: Settings, config: PipelineConfig, samples: list[Sample], report_dir: Path,
                 progress: bool = True, echo: Callable[[str], None] | None = None):
        self.settings = settings
        self.config = config
        self.samples = samples
        self.work = settings.models_path / "recognition" / config.preset
        self.report = report_dir
        self.progress = progress
        self.echo = echo or (lambda msg: log.info(msg))
        self.result = PipelineResult(report_dir, self.work / MANIFEST_NAME)
        self._pixels: dict[str, np.ndarray] = {}
        self.lung_masks: dict[str, np.ndarray] = {}  # predicted, post-processed
        self.results: dict = {"config": config.to_dict()}
        self.manifest: dict = {"preset": config.preset, "infection_configuration": config.infection_configuration,
                               "scorecam_max_maps": config.scorecam_max_maps, "classifiers": {}}
        self.trained_classifiers: dict[tuple[str, str], Path] = {}  # (scheme, key) -> fold-0 checkpoint
        self.pending_models: list[tuple] = []  # Model rows, written by write_models into the caller's session

    # -- helpers ------------------------------------------------------------------------------------
    def pixels(self, s: Sample) -> np.ndarray:
        if s.key not in self._pixels:
            self._pixels[s.key] = read_image(s.image_path)
        return self._pixels[s.key]

    def _seg_config(self, budget_s: float | None):
        from annotator.segmentation.train import get_preset

        base = get_preset(self.config.segmentation_preset)
        return dataclasses.replace(base, max_train_s=budget_s if budget_s is not None else base.max_train_s,
                                   verify_fast_paths=False)

    def _table(self, name: str, table: Table) -> None:
        _, md = write_table(table, self.report, TABLE_STEMS.get(name, name))
        self.result.tables[name] = md

    def _plot(self, path: Path) -> None:
        self.result.plots.append(path)

    def note(self, text: str) -> None:
        self.result.notes.append(text)
        self.echo(text)

    # -- split ----------------------------------------------------------------------------------
    def step_split(self) -> None:
        labelled = [s for s in self.samples if s.cls]
        verified = {s.key for s in self.samples if s.split == "test"}
        if verified:
            self.test_keys = verified
            self.note(f"Test split: Stage IV's verified set, {len(verified)} images.")
        else:
            classes = sorted({s.cls for s in labelled})
            idx = grouped_holdout([classes.index(s.cls) for s in labelled], [s.group for s in labelled],
                                  self.config.test_share, seed=self.config.seed)
            self.test_keys = {labelled[i].key for i in idx}
            self.note(
                f"Test split: no verified (Stage IV) test set in this workspace, so a stated split: a patient-grouped, "
                f"class-stratified hold-out of {len(self.test_keys)} of {len(labelled)} labelled images "
                f"(share {self.config.test_share}, seed {self.config.seed}); no patient is on both sides."
            )
        (self.work).mkdir(parents=True, exist_ok=True)
        (self.work / "test_split.json").write_text(json.dumps(sorted(self.test_keys)))

    # -- lung network -------------------------------------------------------------------------------
    def step_lung(self) -> None:
        from annotator.segmentation.predict import Predictor
        from annotator.segmentation.registry import get_spec
        from annotator.segmentation.train import train_model

        with_mask = [s for s in self.samples if s.lung_mask_path is not None]
        train = [s for s in with_mask if s.key not in self.test_keys]
        test = [s for s in with_mask if s.key in self.test_keys]
        if len(train) < 2:
            raise TrainingError(f"only {len(train)} training images have a lung mask; import lung masks first")
        classes = sorted({s.cls or "" for s in train})
        val_idx = set(grouped_holdout([classes.index(s.cls or "") for s in train], [s.group for s in train], 0.1,
                                      seed=self.config.seed).tolist()) if len({s.group for s in train}) >= 10 else set()
        fit = [s for i, s in enumerate(train) if i not in val_idx] or train
        val = [s for i, s in enumerate(train) if i in val_idx] or train
        cap = self.config.max_lung_train_images
        if cap is not None and len(fit) > cap:  # every k-th image of the class-sorted list: stratified, fixed
            ordered = sorted(fit, key=lambda s: (s.cls or "", s.key))
            fit = [ordered[int(i * len(ordered) / cap)] for i in range(cap)]
            val = val[: max(2, cap // 8)]
            self.note(f"Lung network: trained on a class-stratified subset of {len(fit)} training images "
                      f"(max_lung_train_images={cap}, a CPU budget).")
        tconfig = self._seg_config(self.config.lung_budget_s)
        spec = get_spec(self.config.lung_spec, tconfig.input_size_px)

        def pairs(items):
            return [(self.pixels(s), read_mask(s.lung_mask_path, self.pixels(s).shape)) for s in items]

        self.echo(f"lung network {spec.name}: {len(fit)} training, {len(val)} validation, {len(test)} test images")
        res = train_model(spec, tconfig, pairs(fit), pairs(val), self.work / "lung", progress=self.progress,
                          snapshot={"purpose": "recognition-lung", "test_split": _digest(sorted(self.test_keys))})
        self.lung = Predictor.from_checkpoint(res.checkpoint_path, backend="eager", device=self.settings.device)
        self.lung_result = res
        self.manifest["lung"] = str(res.checkpoint_path.relative_to(self.work))
        self._register("lung", spec.name, res.checkpoint_path, res.model_version, res.metrics)
        if res.curves_path and Path(res.curves_path).is_file():
            dest = self.report / "lung_training_curves.png"
            shutil.copyfile(res.curves_path, dest)
            self._plot(dest)
        table = Table("Lung segmentation on the test split (Table 5)", ["network", "scoring", "n", *(f"{m} %" for m in SEG_METRICS)])
        if test:
            predicted = self.lung.predict([self.pixels(s) for s in test])
            truth = [read_mask(s.lung_mask_path, self.pixels(s).shape) for s in test]
            scores = segmentation_scores(predicted, truth)
            n = scores["n"]
            table.add(spec.name, "per-image mean", n, *(percent(scores[m], scores[f"{m}_ci"], n) for m in SEG_METRICS))
            pooled = scores["pooled"]
            table.add(spec.name, "pooled pixels", n, *(percent(pooled[m], pooled[f"{m}_ci"], n) for m in SEG_METRICS))
            self.results["lung"] = scores
        else:
            table.add(spec.name, "per-image mean", 0, *["too few to measure"] * len(SEG_METRICS))
        table.note = f"n = test images with a reference lung mask; trained on {len(fit)}, validated on {len(val)}."
        self._table("lung", table)

    def predict_lungs(self, items: Sequence[Sample]) -> None:
        todo = [s for s in items if s.key not in self.lung_masks]
        with progress_bar("predicting lungs", total=len(todo), enabled=self.progress and len(todo) > 32,
                          unit="images") as bar:
            for start in range(0, len(todo), 32):
                chunk = todo[start:start + 32]
                for s, m in zip(chunk, self.lung.predict([self.pixels(s) for s in chunk]), strict=True):
                    self.lung_masks[s.key] = m
                bar.advance(len(chunk))

    # -- infection networks ----------------------------------------------------------------------
    def step_infection(self) -> None:
        from annotator.segmentation.predict import Predictor
        from annotator.segmentation.registry import get_spec
        from annotator.segmentation.train import train_model

        with_mask = [s for s in self.samples if s.infection_mask_path is not None]
        if not with_mask:
            raise TrainingError("no image in the store has an infection mask; import some (e.g. --layout covid-qu-ex)")
        test = [s for s in with_mask if s.key in self.test_keys]
        if not test:  # the workspace split missed them: a stated hold-out of the infection set
            classes = sorted({s.cls or "" for s in with_mask})
            idx = grouped_holdout([classes.index(s.cls or "") for s in with_mask], [s.group for s in with_mask],
                                  self.config.test_share, seed=self.config.seed)
            test = [with_mask[i] for i in idx]
        test_keys = {s.key for s in test}
        train = [s for s in with_mask if s.key not in test_keys]
        positives = sum(1 for s in train if read_mask(s.infection_mask_path).any())
        if positives == 0:
            raise TrainingError(f"none of the {len(train)} training infection masks has an infected pixel")
        self.note(f"Infection segmentation: {len(train)} training images ({positives} with infection), "
                  f"{len(test)} test images; validated on the training images (too few to hold out).")
        tconfig = self._seg_config(self.config.infection_budget_s)
        spec = get_spec(self.config.infection_spec, tconfig.input_size_px)
        self.predict_lungs(test)
        self.infection: dict[str, Predictor] = {}
        table = Table("Infection segmentation on the test split: parallel vs cascaded (Table 6)",
                      ["configuration", "network", "n", *(f"{m} %" for m in SEG_METRICS)])
        for conf in INFECTION_CONFIGURATIONS:
            def pairs(items, conf=conf):
                images = [self.pixels(s) for s in items]
                lungs = [read_mask(s.lung_mask_path, self.pixels(s).shape) if s.lung_mask_path else None for s in items]
                lungs = [m if m is not None else self._predicted_lung(s) for m, s in zip(lungs, items, strict=True)]
                infections = [read_mask(s.infection_mask_path, self.pixels(s).shape) for s in items]
                return training_pairs(images, lungs, infections, conf)

            fit = pairs(train)
            self.echo(f"infection network {spec.name} ({conf}): {len(fit)} training images")
            res = train_model(spec, tconfig, fit, fit, self.work / f"infection-{conf}", progress=self.progress,
                              snapshot={"purpose": f"recognition-infection-{conf}"})
            predictor = Predictor.from_checkpoint(res.checkpoint_path, backend="eager", device=self.settings.device)
            self.infection[conf] = predictor
            self._register("infection", spec.name, res.checkpoint_path, res.model_version, {**res.metrics, "configuration": conf})
            if conf == self.config.infection_configuration:
                self.manifest["infection"] = str(res.checkpoint_path.relative_to(self.work))
            images = [self.pixels(s) for s in test]
            lungs = [self.lung_masks[s.key] for s in test]
            probs = predictor.predict_proba(infection_inputs(images, lungs, conf))
            predicted = [infected_mask(lm, p) for lm, p in zip(lungs, probs, strict=True)]
            truth = [read_mask(s.infection_mask_path, self.pixels(s).shape) for s in test]
            scores = segmentation_scores(predicted, truth)
            n = scores["n"]
            table.add(conf, spec.name, n, *(percent(scores[m], scores[f"{m}_ci"], n) for m in SEG_METRICS))
            self.results.setdefault("infection", {})[conf] = scores
        table.note = ("Predicted infection = infection network (p > 0.5) AND predicted lungs. n = test images with a "
                      "reference infection mask (all-zero masks of non-COVID/normal images included); fewer than "
                      f"{MIN_TEST_IMAGES} reads 'too few to measure'.")
        self._table("infection", table)

    def _predicted_lung(self, s: Sample) -> np.ndarray:
        self.predict_lungs([s])
        return self.lung_masks[s.key]

    def _infection_proba(self, items: Sequence[Sample], conf: str) -> list[np.ndarray]:
        self.predict_lungs(items)
        out = []
        for start in range(0, len(items), 32):
            chunk = items[start:start + 32]
            inputs = infection_inputs([self.pixels(s) for s in chunk], [self.lung_masks[s.key] for s in chunk], conf)
            out.extend(self.infection[conf].predict_proba(inputs))
        return out

    # -- detection and quantification ---------------------------------------------------------------
    def step_detection(self) -> None:
        classes = CLASS_SCHEMES["covid-pneumonia-normal"]
        test = [s for s in self.samples if s.key in self.test_keys and s.cls in classes]
        table = Table("COVID-19 detection on the test split: infected lung pixel present (Table 8)",
                      classification_columns(["configuration"]))
        for conf in INFECTION_CONFIGURATIONS:
            probs = self._infection_proba(test, conf)
            predicted = [0 if quantify(self.lung_masks[s.key], p).covid_positive else 1 for s, p in zip(test, probs, strict=True)]
            truth = [0 if s.cls == "covid" else 1 for s in test]
            cm = confusion_matrix(truth, predicted, 2)
            report = classification_report(cm, DETECTION_CLASSES)
            classification_rows(table, report, DETECTION_CLASSES, prefix=[conf])
            self._plot(plots.plot_confusion(cm, DETECTION_CLASSES, self.report / f"confusion_detection_{conf}.png",
                                            f"detection ({conf})"))
            self.results.setdefault("detection", {})[conf] = {"confusion": cm.tolist(), "report": report}
        table.note = (f"n = {len(test)} test images of the classes {list(classes)}; positive = at least one lung pixel "
                      "with infection p > 0.5.")
        self._table("detection", table)

    def step_quantification(self) -> None:
        scored = [s for s in self.samples if s.severity_opacity is not None or s.severity_geographic is not None]
        conf = self.config.infection_configuration
        table = Table("Infected share of the lungs vs expert severity scores (Spearman)",
                      ["score", "n", "rho", "95% interval", "p"])
        if not scored:
            table.add("none", 0, "too few to measure", "", "")
            self._table("quantification", table)
            return
        probs = self._infection_proba(scored, conf)
        shares = [quantify(self.lung_masks[s.key], p).infected_share for s, p in zip(scored, probs, strict=True)]
        for label, values in (("opacity (0-6)", [s.severity_opacity for s in scored]),
                              ("geographic extent (0-8)", [s.severity_geographic for s in scored])):
            vals = [np.nan if v is None else v for v in values]
            r = spearman(shares, vals)
            self.results.setdefault("quantification", {})[label] = r
            if r["n"] < MIN_TEST_IMAGES or np.isnan(r["rho"]):
                table.add(label, r["n"], "too few to measure" if r["n"] < MIN_TEST_IMAGES else "n/a (constant)", "", "")
            else:
                table.add(label, r["n"], f"{r['rho']:.3f}", f"{r['ci_low']:.3f} to {r['ci_high']:.3f}", f"{r['p']:.3g}")
            self._plot(plots.plot_scatter(vals, shares, self.report / f"quantification_{label.split()[0]}.png",
                                          f"expert {label}", "predicted infected share of lungs", f"{conf}, n={r['n']}"))
        in_training = sum(1 for s in scored if s.infection_mask_path is not None)
        table.note = (f"Configuration {conf}. {len(scored)} images with an expert score (Cohen et al. 2020); "
                      f"{in_training} of them had an infection mask (and may have been trained on).")
        self._table("quantification", table)

    # -- classification -----------------------------------------------------------------------------
    def _classifier_config(self, arch: str, preprocessing: str, mode: str) -> ClassifierConfig:
        cs = self.config.classifier
        size = cs.input_size_px or get_architecture(arch).paper_input_px
        weights = None
        if cs.weights_dir:
            candidate = Path(cs.weights_dir) / f"{arch}.pt"
            weights = str(candidate) if candidate.is_file() else None
        return ClassifierConfig(arch=arch, input_size_px=max(size, get_architecture(arch).min_input_px),
                                preprocessing=preprocessing, input_mode=mode, epochs=cs.epochs,
                                batch_size=cs.batch_size, learning_rate=cs.learning_rate,
                                weight_decay=cs.weight_decay, balance=cs.balance, balance_cap=cs.balance_cap,
                                seed=cs.seed, weights_path=weights)

    def classifier_plan(self) -> list[tuple[str, list[str], ClassifierConfig]]:
        """(scheme, the tables it feeds, config) in run order; a configuration is trained once per scheme."""
        plan: dict[tuple[str, str], tuple[str, list[str], ClassifierConfig]] = {}

        def add(scheme: str, table: str, cfg: ClassifierConfig) -> None:
            plan.setdefault((scheme, cfg.key), (scheme, [], cfg))[1].append(table)

        if "covid-pneumonia-normal" in self.config.schemes:
            for p in self.config.compare_preprocessing:
                add("covid-pneumonia-normal", "preprocessing", self._classifier_config(self.config.compare_network, p, "plain"))
        for scheme in self.config.schemes:
            for arch in self.config.networks:
                for mode in self.config.input_modes:
                    add(scheme, scheme, self._classifier_config(arch, self.config.preprocessing, mode))
        return list(plan.values())

    def _arrays(self, items: Sequence[Sample], cfg: ClassifierConfig, cache: dict) -> list[np.ndarray]:
        key = (cfg.preprocessing, cfg.input_mode, cfg.input_size_px)
        store = cache.setdefault(key, {})
        if cfg.input_mode == "segmented":
            self.predict_lungs(items)
        for s in items:
            if s.key not in store:
                mask = self.lung_masks[s.key] if cfg.input_mode == "segmented" else None
                store[s.key] = prepare(self.pixels(s), cfg.preprocessing, cfg.input_size_px, mask)
        return [store[s.key] for s in items]

    def step_classification(self) -> None:
        plan = self.classifier_plan()
        scheme_data = {}
        for scheme in self.config.schemes:
            items, labels = select_scheme(self.samples, CLASS_SCHEMES[scheme], scheme)
            folds = stratified_group_folds(labels, [s.group for s in items], self.config.folds, self.config.seed)
            counts = Counter(labels)
            small = [CLASS_SCHEMES[scheme][c] for c in range(len(CLASS_SCHEMES[scheme])) if counts.get(c, 0) < self.config.folds]
            if small:
                self.note(f"Scheme {scheme}: classes {small} have fewer images than folds ({self.config.folds}); "
                          "some training folds lack them and their figures read 'too few to measure'.")
            scheme_data[scheme] = (items, labels, folds)
            self.note(f"Scheme {scheme}: {len(items)} images ({', '.join(f'{CLASS_SCHEMES[scheme][c]} {n}' for c, n in sorted(counts.items()))}), "
                      f"{self.config.folds}-fold cross-validation grouped by patient.")
        tables = {"preprocessing": Table("Preprocessing schemes, COVID-19 / non-COVID pneumonia / normal, "
                                         f"{self.config.compare_network}, plain input (Table 4)",
                                         classification_columns(["preprocessing"]))}
        for scheme in self.config.schemes:
            number = {"covid-pneumonia-normal": "Table 9", "covid-sars-mers": "Table 10"}.get(scheme, "")
            tables[scheme] = Table(f"Classification {' / '.join(CLASS_SCHEMES[scheme])}: networks x input ({number})",
                                   classification_columns(["network", "input"]))
        total_trainings = len(plan) * self.config.folds
        cache: dict = {}
        with progress_bar("classifiers (folds)", total=total_trainings, enabled=self.progress, unit="folds") as bar:
            for scheme, table_names, cfg in plan:
                items, labels, folds = scheme_data[scheme]
                names = CLASS_SCHEMES[scheme]
                arrays = self._arrays(items, cfg, cache)
                proba = np.zeros((len(items), len(names)), dtype=np.float64)
                out_dir = self.work / "classifiers" / scheme / cfg.key
                data_id = _digest([s.key for s in items])
                for k, test_idx in enumerate(folds):
                    done = out_dir / f"fold-{k}.json"
                    ckpt = out_dir / f"fold-{k}.pt"
                    if done.is_file() and ckpt.is_file():
                        saved = json.loads(done.read_text())
                        if saved.get("config") == cfg.fingerprint() and saved.get("data") == data_id:
                            proba[test_idx] = np.asarray(saved["proba"])
                            bar.advance()
                            continue
                    train_idx = np.setdiff1d(np.arange(len(items)), test_idx)
                    with progress_bar(f"{scheme} {cfg.key} fold {k + 1}/{len(folds)}", enabled=self.progress,
                                      unit="steps") as fold_bar:
                        res = train_classifier(cfg, [arrays[i] for i in train_idx], [labels[i] for i in train_idx],
                                               names, ckpt, progress=lambda d, t: fold_bar.update(completed=d, total=t))
                    model = Classifier.from_checkpoint(ckpt).model
                    proba[test_idx] = predict_arrays(model, [arrays[i] for i in test_idx])
                    done.write_text(json.dumps({"config": cfg.fingerprint(), "data": data_id, "model_version": res.model_version,
                                                "proba": proba[test_idx].tolist(), "history": res.history,
                                                "train_s": res.train_seconds}))
                    bar.advance()
                self.trained_classifiers[(scheme, cfg.key)] = out_dir / "fold-0.pt"
                predicted = proba.argmax(1)
                cm = confusion_matrix(labels, predicted, len(names))
                report = classification_report(cm, names)
                curves = one_vs_rest(labels, proba, names)
                tag = f"{scheme}_{cfg.key}"
                self._plot(plots.plot_confusion(cm, names, self.report / f"confusion_{tag}.png", f"{cfg.key}"))
                self._plot(plots.plot_roc(curves, self.report / f"roc_{tag}.png", f"{scheme}: {cfg.key}"))
                if "preprocessing" in table_names:
                    classification_rows(tables["preprocessing"], report, names, prefix=[cfg.preprocessing])
                if scheme in table_names:
                    classification_rows(tables[scheme], report, names, prefix=[cfg.arch, cfg.input_mode])
                self.results.setdefault("classification", {}).setdefault(scheme, {})[cfg.key] = {
                    "tables": table_names, "confusion": cm.tolist(), "report": report,
                    "auc": {c: curves[c]["auc"] for c in names}}
        cache.clear()
        for name, table in tables.items():
            if not table.rows:
                continue
            table.note = ("Confusion matrix summed over the test folds of stratified patient-grouped "
                          f"{self.config.folds}-fold cross-validation; n per class = its images; 95% intervals; "
                          f"classes under {MIN_TEST_IMAGES} images read 'too few to measure'. Segmented input = "
                          "the lung network's predicted masks (the lung network saw the training-split images).")
            self._table(name, table)
        self._deploy_classifiers()

    def _deploy_classifiers(self) -> None:
        """Per scheme, the configuration of Tables 9-10 with the best weighted F1; its fold-0 model."""
        for scheme, configs in self.results.get("classification", {}).items():
            candidates = [(k, v) for k, v in configs.items() if scheme in v["tables"]]
            if not candidates:
                continue
            key, best = max(candidates, key=lambda kv: np.nan_to_num(kv[1]["report"]["overall"]["f1"], nan=-1))
            path = self.trained_classifiers[(scheme, key)]
            self.manifest["classifiers"][scheme] = str(path.relative_to(self.work))
            clf = Classifier.from_checkpoint(path)
            self._register("classifier", clf.config.arch, path, clf.model_version,
                           {"scheme": scheme, "config": key, "cv_overall": best["report"]["overall"]})
            self.note(f"Deployed for {scheme}: {key} (fold-0 model, best weighted F1 in cross-validation).")

    # -- Score-CAM ---------------------------------------------------------------------------------
    def step_scorecam(self) -> None:
        from annotator.recognition.report import saliency_overlay
        from annotator.recognition.scorecam import saliency_for

        plt = plots._pyplot()
        for scheme in self.config.schemes:
            arch = self.config.networks[0]
            models = {}
            for mode in self.config.input_modes:
                cfg = self._classifier_config(arch, self.config.preprocessing, mode)
                path = self.trained_classifiers.get((scheme, cfg.key))
                if path is not None:
                    models[mode] = Classifier.from_checkpoint(path)
            if not models:
                continue
            items, labels = select_scheme(self.samples, CLASS_SCHEMES[scheme], scheme)
            fold0 = stratified_group_folds(labels, [s.group for s in items], self.config.folds, self.config.seed)[0]
            examples = [items[i] for i in fold0 if labels[i] == 0][: self.config.scorecam_examples]
            self.predict_lungs(examples)
            for s in examples:
                image = self.pixels(s)
                fig, axes = plt.subplots(1, 1 + len(models), figsize=(4 * (1 + len(models)), 4.3), dpi=100)
                axes[0].imshow(image, cmap="gray")
                axes[0].set_title(f"{s.cls} ({Path(str(s.image_path)).name[:24]})", fontsize=8)
                for ax, (mode, clf) in zip(axes[1:], models.items(), strict=True):
                    sal, c = saliency_for(clf, image, self.lung_masks[s.key], None, self.config.scorecam_max_maps)
                    ax.imshow(saliency_overlay(image, sal))
                    ax.set_title(f"Score-CAM {mode}: {clf.class_names[c]}", fontsize=8)
                for ax in axes:
                    ax.axis("off")
                fig.tight_layout()
                path = self.report / f"scorecam_{scheme}_{s.key.replace('/', '_').replace('.', '_')}.png"
                fig.savefig(path)
                plt.close(fig)
                self._plot(path)

    # -- timing and parameters (Tables 11-12) ----------------------------------------------------------
    def step_timing(self) -> None:
        from annotator.segmentation.factory import count_parameters as seg_parameters

        test = [s for s in self.samples if s.key in self.test_keys][: self.config.timing_images]
        if not test:
            test = self.samples[: self.config.timing_images]
        images = [self.pixels(s) for s in test]
        threads = torch.get_num_threads()

        def time_it(fn) -> tuple[float, float]:
            fn(images[0])  # warm-up
            ms = []
            for img in images:
                start = time.perf_counter()
                fn(img)
                ms.append(1000 * (time.perf_counter() - start))
            return float(np.mean(ms)), float(np.std(ms))

        timing = Table("Inference time per image, CPU (Table 11)", ["model", "task", "n images", "mean ms", "sd ms"])
        params = Table("Trainable parameters (Table 12)", ["model", "task", "parameters (M)"])
        seg_models = [("lung", self.lung)] + [(f"infection ({c})", p) for c, p in self.infection.items()]
        for task, pred in seg_models:
            mean, sd = time_it(lambda img, pred=pred: pred.predict_proba([img]))
            timing.add(pred.spec.name, task, len(images), f"{mean:.1f}", f"{sd:.1f}")
            params.add(pred.spec.name, task, f"{seg_parameters(pred.model) / 1e6:.2f}")
        seen_arch = set()
        for (scheme, key), path in self.trained_classifiers.items():
            clf = Classifier.from_checkpoint(path)
            masks = {}
            if clf.config.input_mode == "segmented":
                self.predict_lungs(test)
                masks = {id(self.pixels(s)): self.lung_masks[s.key] for s in test}
            mean, sd = time_it(lambda img, clf=clf, masks=masks: clf.predict_proba([img], [masks.get(id(img))]))
            timing.add(key, f"classifier {scheme}", len(images), f"{mean:.1f}", f"{sd:.1f}")
            if clf.config.arch not in seen_arch:
                seen_arch.add(clf.config.arch)
                params.add(clf.config.arch, f"classifier ({len(clf.class_names)} classes)", f"{count_parameters(clf.model) / 1e6:.2f}")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        timing.note = (f"Single-image calls after one warm-up, torch threads {threads}, eager fp32, load average "
                       f"{load:.1f} on {os.cpu_count()} cores when measured (a load above the core count slows them).")
        self.timing_table = timing
        self._table("timing", timing)
        self._table("parameters", params)

    # -- store ---------------------------------------------------------------------------------
    def _register(self, task: str, spec: str, path: Path, version: str, metrics: dict) -> None:
        self.pending_models.append((task, spec, path, version, metrics))

    def write_models(self, session: Session) -> None:
        from db.models import Model

        for task, spec, path, version, metrics in self.pending_models:
            if session.scalar(select(Model.id).where(Model.model_version == version)) is not None:
                continue
            try:
                rel = str(Path(path).resolve().relative_to(self.settings.workspace_path))
            except ValueError:
                rel = str(path)
            session.add(Model(model_version=version, task=task, spec=spec, preset=self.config.preset,
                              checkpoint_path=rel, metrics=json.loads(json.dumps(metrics, default=_json_default)),
                              training_snapshot={"pipeline": self.config.preset}, stage="pipeline"))
        session.flush()

    def write_manifest(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / MANIFEST_NAME).write_text(json.dumps(self.manifest, indent=2))
        current = dict(self.manifest)
        for k in ("lung", "infection"):
            current[k] = str(self.work / self.manifest[k])
        current["classifiers"] = {s: str(self.work / p) for s, p in self.manifest["classifiers"].items()}
        (self.work.parent / CURRENT_NAME).write_text(json.dumps(current, indent=2))

    def write_readme(self) -> None:
        lines = [f"# Recognition pipeline report (preset {self.config.preset})", "",
                 "Every figure states its test-set size n; a class with fewer than "
                 f"{MIN_TEST_IMAGES} test images reads 'too few to measure'. Percentages are followed by the 95% "
                 "interval radius 1.96*sqrt(m(1-m)/n).", "", "## Data and splits", ""]
        lines += [f"- {n}" for n in self.result.notes]
        lines += ["", "## Tables", ""]
        for name, md in self.result.tables.items():
            lines.append(md.read_text())
        lines += ["## Plots", ""] + [f"- {p.name}" for p in self.result.plots]
        (self.report / "README.md").write_text("\n".join(lines) + "\n")
        (self.report / "results.json").write_text(json.dumps(self.results, indent=2, default=_json_default))


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def train_pipeline(settings: Settings, session: Session, config: PipelineConfig, report_dir: Path | None = None,
                   progress: bool = True, echo: Callable[[str], None] | None = None) -> PipelineResult:
    """Run every step; the caller's session boundary commits the Model rows."""
    start = time.perf_counter()
    samples = samples_from_store(session, settings)
    if not samples:
        raise TrainingError(f"the store of {settings.workspace_path} has no images; run `annotator data import PATH`")
    for scheme in config.schemes:  # fail before any training: a scheme's classes missing, too many folds
        items, labels = select_scheme(samples, CLASS_SCHEMES[scheme], scheme)
        stratified_group_folds(labels, [s.group for s in items], config.folds, config.seed)
    report_dir = report_dir or settings.reports_path / f"recognition-{config.preset}"
    report_dir.mkdir(parents=True, exist_ok=True)
    runner = PipelineRunner(settings, config, samples, report_dir, progress, echo)
    runner.step_split()
    runner.step_lung()
    runner.step_infection()
    runner.step_detection()
    runner.step_quantification()
    runner.step_classification()
    runner.step_scorecam()
    runner.step_timing()
    runner.write_manifest()
    runner.write_models(session)
    runner.result.seconds = time.perf_counter() - start
    runner.note(f"Wall time of this run: {runner.result.seconds / 60:.1f} min (resumed steps are not re-trained).")
    runner.write_readme()
    runner.result.headline = headline(runner.results)
    return runner.result


def headline(results: dict) -> dict:
    """The figures a user quotes: weighted overall per classifier table, detection, correlations."""
    out: dict = {}
    for scheme, configs in results.get("classification", {}).items():
        for key, v in configs.items():
            ov = v["report"]["overall"]
            out[f"{scheme} {key}"] = {"n": ov["n"], "accuracy": ov["accuracy"], "f1": ov["f1"]}
    for conf, v in results.get("detection", {}).items():
        ov = v["report"]["overall"]
        out[f"detection {conf}"] = {"n": ov["n"], "accuracy": ov["accuracy"], "f1": ov["f1"]}
    for label, r in results.get("quantification", {}).items():
        out[f"severity {label}"] = {"n": r["n"], "rho": r["rho"]}
    if "lung" in results:
        out["lung dsc"] = {"n": results["lung"]["n"], "dsc": results["lung"]["dsc"]}
    return out
