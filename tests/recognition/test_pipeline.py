"""End to end on a small real workspace: `annotator train-pipeline --preset tiny`, then `annotator predict`."""

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from annotator.cli.main import app
from annotator.errors import ConfigError, TrainingError, UnknownNameError
from annotator.recognition.config import load_pipeline_config
from annotator.recognition.pipeline import train_pipeline
from annotator.recognition.steps.report import TABLE_STEMS
from db.engine import session_scope
from db.models import Model

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_workspace(small_workspace):
    ws = small_workspace.workspace_path
    result = runner.invoke(app, ["-w", str(ws), "train-pipeline", "--preset", "tiny", "--no-progress"])
    assert result.exit_code == 0, result.output
    return small_workspace, result.output


SEG = ["n", "accuracy %", "iou %", "dsc %"]
CLS = ["class", "n", "accuracy %", "precision %", "sensitivity %", "f1 %", "specificity %", "AUC"]
COLUMNS = {  # the thesis' tables, numbered as it numbers them
    "table_03_stage1_unet": ["network", "dataset", *SEG],
    "table_04_covid_sars_mers": ["network", "input", "preprocessing", *CLS],
    "table_05_lung_segmentation": ["network", *SEG],
    "table_06_infection_parallel_vs_cascaded": ["configuration", "network", *SEG],
    "table_07_infection_segmentation": ["network", *SEG],
    "table_08_detection": ["network", "configuration", *CLS],
    "table_09_covid_pneumonia_normal": ["network", "input", *CLS],
    "table_10_covid_pneumonia_normal_networks": ["network", "input", *CLS],
    "table_11_segmentation_networks": ["network", "task", "parameters (M)", "n", "mean ms", "sd ms"],
    "table_12_classification_networks": ["network", "input px", "classes", "parameters (M)", "n", "mean ms", "sd ms"],
}


def _store(settings):
    """Per image id: (class, dataset, has a lung mask); and the run's test split, both read independently."""
    from db.models import Image, Mask

    with session_scope(settings.database_url) as session:
        masks = set(session.execute(select(Mask.image_id, Mask.kind)).all())
        images = {str(i.id): (i.cls, i.dataset, (i.id, "lung") in masks) for i in session.scalars(select(Image))}
    test = set(json.loads((settings.models_path / "recognition/tiny/test_split.json").read_text()))
    return images, test


@pytest.mark.slow
def test_train_pipeline_writes_the_thesis_tables_with_their_n(trained_workspace):
    import pandas as pd

    settings, output = trained_workspace
    report = settings.reports_path / "recognition-tiny"
    assert f"report: {report}" in output.replace("\n", "")
    for stem in TABLE_STEMS.values():
        assert (report / f"{stem}.csv").is_file() and (report / f"{stem}.md").is_file(), stem
    t = {stem: pd.read_csv(report / f"{stem}.csv", dtype=str) for stem in COLUMNS}
    for stem, columns in COLUMNS.items():
        assert list(t[stem].columns) == columns, stem
    images, test = _store(settings)
    # the 3-class study sorts every test image (SARS, MERS and tuberculosis as non-COVID pneumonia)
    assert {images[k][0] for k in test} >= {"covid", "normal", "tuberculosis"}
    n_test_3 = len(test)
    n_study1 = sum(1 for c, _, _ in images.values() if c in {"covid", "sars", "mers"})
    n_lung_test = sum(1 for k in test if images[k][2])
    montgomery = sum(1 for k in test if images[k][1] == "Montgomery" and images[k][2])
    overall = {stem: frame[frame["class"] == "overall (weighted)"] for stem, frame in t.items() if "class" in frame}
    assert set(overall["table_10_covid_pneumonia_normal_networks"]["n"]) == {str(n_test_3)}  # Study II: the test split
    assert set(overall["table_09_covid_pneumonia_normal"]["n"]) == {str(n_test_3)}
    assert set(overall["table_08_detection"]["n"]) == {str(n_test_3)}
    assert set(overall["table_04_covid_sars_mers"]["n"]) == {str(n_study1)}  # Study I: cross-validation over all
    assert list(t["table_05_lung_segmentation"]["network"]) == ["unet-resnet18", "fpn-resnet18"]
    assert set(t["table_05_lung_segmentation"]["n"]) == {str(n_lung_test)}
    stage1 = t["table_03_stage1_unet"].set_index("dataset")["n"]
    assert montgomery >= 1 and stage1["Montgomery"] == str(montgomery) and stage1["Shenzhen"] == "0"
    assert list(t["table_06_infection_parallel_vs_cascaded"]["configuration"]) == ["parallel", "cascaded"]
    assert list(t["table_07_infection_segmentation"]["network"]) == ["unet-resnet18", "fpn-resnet18"]
    assert list(overall["table_10_covid_pneumonia_normal_networks"]["input"]) == ["plain", "segmented"]
    assert list(t["table_11_segmentation_networks"]["task"]) == ["lung", "lung", "infection (parallel)",
                                                                 "infection (cascaded)", "infection (parallel)"]
    assert list(t["table_12_classification_networks"]["input px"]) == ["64"]
    system = pd.read_csv(report / "table_system_time.csv", dtype=str)
    assert list(system["segmentation"]) == ["parallel", "sequential"] and system["device"].str.startswith("CPU").all()
    names = {p.name for p in report.glob("*.png")}
    for scheme in ("covid-pneumonia-normal", "covid-sars-mers"):
        for mode in ("plain", "segmented"):
            assert f"scorecam_{scheme}_squeezenet_{mode}.png" in names
    assert {"confusion_detection_unet-resnet18_cascaded.png", "roc_detection_fpn-resnet18_parallel.png",
            "quantification_opacity.png", "lung_training_curves.png"} <= names
    readme = (report / "README.md").read_text()
    assert "stated split: a patient-grouped" in readme
    mers = t["table_04_covid_sars_mers"][t["table_04_covid_sars_mers"]["class"] == "mers"]
    assert len(mers) == 2 and (mers["n"] == "1").all() and (mers["f1 %"] == "too few to measure").all()
    results = json.loads((report / "results.json").read_text())
    assert results["device"] == "cpu" and "Networks trained and run on cpu (setting device = auto)" in readme
    cm = results["classification"]["covid-pneumonia-normal"]["squeezenet-plain-stack-64px"]["confusion"]
    assert sum(map(sum, cm)) == n_test_3
    prov = results["provenance"]
    assert prov["preset"] == "tiny" and prov["machine"]["device"].startswith("CPU")
    assert prov["splits"]["study2_test"]["n"] == n_test_3
    with session_scope(settings.database_url) as session:
        rows = session.execute(select(Model.task, Model.model_version).where(Model.stage == "pipeline")).all()
    assert sorted(v for _, v in rows) == sorted(m["model_version"] for m in prov["models"])
    tasks = [task for task, _ in rows]  # 2 lung + Stage I's U-Net, 3 infection, 1 deployed classifier per scheme
    assert (tasks.count("lung"), tasks.count("infection"), tasks.count("classifier")) == (3, 3, 2)


@pytest.mark.slow
def test_a_rerun_skips_finished_models(trained_workspace):
    settings, _ = trained_workspace
    fold = settings.models_path / "recognition/tiny/classifiers/covid-sars-mers/squeezenet-plain-stack-64px/fold-0.pt"
    before = fold.stat().st_mtime_ns
    result = runner.invoke(app, ["-w", str(settings.workspace_path), "train-pipeline", "--preset", "tiny", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert fold.stat().st_mtime_ns == before


@pytest.mark.slow
def test_predict_prints_json_and_writes_the_png_report(trained_workspace, sample_root, tmp_path):
    settings, _ = trained_workspace
    image = sample_root / "images/covid/quex_covid_1579.jpg"
    result = runner.invoke(app, ["-w", str(settings.workspace_path), "predict", str(image), "--json",
                                 "--report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["image"] == str(image)
    assert isinstance(data["covid19"]["detected"], bool)
    assert data["covid19"]["detected"] == (data["covid19"]["probability"] > 0.5)
    assert 0.0 <= data["infected_share"] <= 1.0
    assert set(data["lungs"]) == {"right", "left"}  # the patient's sides
    assert sum(side["lung_pixels"] for side in data["lungs"].values()) <= data["lung_pixels"]
    probs = data["classification"]["covid-pneumonia-normal"]["probabilities"]
    assert set(probs) == {"covid", "non_covid_pneumonia", "normal"}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert data["lung_pixels"] > 0  # the lung network found lungs
    png = tmp_path / "quex_covid_1579.report.png"
    assert data["report_png"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"


def test_predict_refuses_a_corrupt_image(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = runner.invoke(app, ["-w", str(tmp_path), "predict", str(bad)])
    assert result.exit_code == 1
    assert "broken.jpg" in result.output


def test_predict_without_a_trained_pipeline_says_what_to_run(tmp_path, sample_root):
    result = runner.invoke(app, ["-w", str(tmp_path), "predict", str(sample_root / "images/covid/quex_covid_1579.jpg")])
    assert result.exit_code == 1
    assert "annotator train-pipeline" in result.output


def test_missing_scheme_classes_and_too_many_folds_fail_before_training(small_workspace):
    with session_scope(small_workspace.database_url) as session:
        with pytest.raises(ConfigError, match="50 folds but only"):
            train_pipeline(small_workspace, session, load_pipeline_config("tiny", folds=50), progress=False)


def test_a_scheme_whose_classes_are_absent(tmp_path, sample_root):
    from annotator.config import load_settings
    from annotator.ingest.importer import import_items, list_items
    from annotator.workspace import init_workspace

    settings = load_settings(workspace=tmp_path / "ws")
    init_workspace(settings)
    items = [i for i in list_items(sample_root, "manifest") if getattr(i, "cls", None) == "normal"][:3]
    with session_scope(settings.database_url) as session:
        import_items(session, settings, items, "manifest")
        with pytest.raises(TrainingError, match=r"needs classes .*'covid'.* the store has no .*normal 3"):
            train_pipeline(settings, session, load_pipeline_config("tiny"), progress=False)


def test_network_lists_file_picks_the_networks(tmp_path):
    from annotator.recognition.config import PIPELINE_PRESETS, load_network_lists

    paper, quick = PIPELINE_PRESETS["paper"], PIPELINE_PRESETS["quick"]
    assert len(paper.lung_networks) == len(paper.infection_networks) == 15 and len(paper.networks) == 8
    for lists in (quick.lung_networks, quick.infection_networks):
        assert {n.split("-")[0] for n in lists} == {"unet", "unetplusplus", "fpn"}
    assert len(quick.networks) >= 3
    good = tmp_path / "nets.toml"
    good.write_text('lung = ["fpn-densenet121"]\ninfection = ["unet-resnet50", "fpn-resnet18"]\nclassifiers = ["resnet50"]\n')
    cfg = load_pipeline_config("quick", **load_network_lists(good))
    assert (cfg.lung_networks, cfg.infection_networks, cfg.networks) == (
        ("fpn-densenet121",), ("unet-resnet50", "fpn-resnet18"), ("resnet50",))
    bad = tmp_path / "bad.toml"
    bad.write_text('lungs = ["unet-resnet18"]\n')
    with pytest.raises(ConfigError, match="unknown key.*'lungs'.*valid: lung, infection, classifiers"):
        load_network_lists(bad)
    bad.write_text('lung = ["unet-vgg16"]\n')
    with pytest.raises(UnknownNameError, match="vgg16.*resnet18"):
        load_pipeline_config("quick", **load_network_lists(bad))


def test_pipeline_config_file_and_its_errors(tmp_path):
    good = tmp_path / "p.toml"
    good.write_text('preset = "quick"\nfolds = 3\nnetworks = ["resnet18"]\n[classifier]\nepochs = 1\n')
    cfg = load_pipeline_config("paper", good)
    assert (cfg.preset, cfg.folds, cfg.networks, cfg.classifier.epochs) == ("quick", 3, ("resnet18",), 1)
    bad = tmp_path / "bad.toml"
    bad.write_text("fold = 3\n")
    with pytest.raises(ConfigError, match="unknown pipeline setting.*'fold'.*valid:.*folds"):
        load_pipeline_config("quick", bad)
    with pytest.raises(UnknownNameError, match="paper, quick, tiny"):
        load_pipeline_config("fast")
    with pytest.raises(UnknownNameError, match="covid-pneumonia-normal, covid-sars-mers"):
        load_pipeline_config("quick", schemes=("covid-tb",))


@pytest.fixture
def quex_collection(sample_root, tmp_path):
    """A 24-image collection cut from the COVID-QU-Ex set beside the sample set, plus one corrupt image."""
    import csv
    import shutil

    source = sample_root.parent / "cxr-quex"
    if not (source / "manifest.csv").is_file():
        pytest.skip(f"the COVID-QU-Ex set is not at {source}")
    with (source / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    picked = [r for cls in ("covid", "non_covid_pneumonia", "normal") for r in [x for x in rows if x["class"] == cls][:8]]
    root = tmp_path / "collection"
    for r in picked:
        for key in ("file", "lung_mask_file", "infection_mask_file"):
            (root / r[key]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / r[key], root / r[key])
    broken = dict(picked[0], file="images/covid/broken.jpg", lung_mask_file="", infection_mask_file="",
                  has_lung_mask="0", has_infection_mask="0")
    (root / broken["file"]).write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(picked + [broken])
    return root, picked


@pytest.mark.slow
def test_evaluate_pipeline_scores_an_external_collection(trained_workspace, quex_collection):
    from annotator.evaluation.metrics import dice
    from annotator.imaging.io import read_image, read_mask
    from annotator.recognition.predict import CURRENT_NAME, RecognitionPredictor

    settings, _ = trained_workspace
    root, picked = quex_collection
    result = runner.invoke(app, ["-w", str(settings.workspace_path), "evaluate-pipeline", "--data", str(root),
                                 "--layout", "manifest", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["images"] == 24 and len(data["problems"]) == 1 and "broken.jpg" in data["problems"][0]
    assert data["lung"]["n"] == 24 and data["infection"]["n"] == 24  # empty infection masks count: "no infection"
    assert (data["detection"]["n"], data["detection"]["positives"], data["detection"]["negatives"]) == (24, 8, 16)
    assert data["classification"]["covid-pneumonia-normal"]["n"] == 24
    for part in ("sensitivity", "specificity"):
        assert 0.0 <= data["detection"][part] <= 1.0
    # the lung figure, by hand: the mean DSC of the pipeline's own lung masks against the true ones
    predictor = RecognitionPredictor.from_manifest(settings.models_path / "recognition" / CURRENT_NAME)
    try:
        images = [read_image(root / r["file"]) for r in picked]
        lungs, _ = predictor.segment(images)
    finally:
        predictor.close()
    by_hand = [dice(m, read_mask(root / r["lung_mask_file"], m.shape)) for m, r in zip(lungs, picked)]
    assert data["lung"]["dsc"] == pytest.approx(sum(by_hand) / 24, abs=1e-6)
    assert data["lung"]["dsc_ci"] == pytest.approx(1.96 * (data["lung"]["dsc"] * (1 - data["lung"]["dsc"]) / 24) ** 0.5)


def test_evaluate_pipeline_without_a_trained_pipeline_says_what_to_run(tmp_path, quex_collection):
    root, _ = quex_collection
    result = runner.invoke(app, ["-w", str(tmp_path / "ws"), "evaluate-pipeline", "--data", str(root)])
    assert result.exit_code == 1
    assert "train-pipeline" in result.output
