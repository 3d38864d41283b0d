import numpy as np
import pytest
import torch

from annotator.errors import ModelError, TrainingError, UnknownNameError
from annotator.imaging.io import read_image
from annotator.recognition import config as rconfig
from annotator.recognition.classifier import (
    ARCHITECTURES,
    CLASSIFIER_PRESETS,
    Classifier,
    ClassifierConfig,
    build_network,
    load_local_weights,
    target_layer,
)
from annotator.recognition.dataset import samples_from_manifest
from annotator.recognition.preprocessing import prepare
from annotator.recognition.scorecam import saliency_for, score_cam
from annotator.recognition.training import train_classifier


def test_registry_names_match_the_light_config():
    assert tuple(sorted(ARCHITECTURES)) == tuple(sorted(rconfig.CLASSIFIER_ARCHITECTURES))


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="densenet121, densenet161.*squeezenet"):
        ClassifierConfig(arch="vgg16")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_builds_with_its_head_and_score_cam_layer(arch):
    net = build_network(arch, 3)
    size = ARCHITECTURES[arch].min_input_px if "inception" in arch else 64
    captured = []
    handle = target_layer(net, arch).register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.inference_mode():
        out = net.eval()(torch.rand(1, 3, size, size))
    handle.remove()
    assert out.shape == (1, 3)
    assert captured[0].ndim == 4  # a spatial activation map for Score-CAM


def test_small_input_for_inception_is_refused():
    with pytest.raises(TrainingError, match="at least 75 px"):
        ClassifierConfig(arch="inception_v3", input_size_px=64)


def test_local_weights_file_is_loaded_and_a_foreign_one_refused(tmp_path):
    source = build_network("squeezenet", 1000).net
    path = tmp_path / "squeezenet.pt"
    torch.save(source.state_dict(), path)
    net = build_network("squeezenet", 3, weights_path=path).net
    first = next(iter(source.state_dict()))
    assert torch.equal(net.state_dict()[first], source.state_dict()[first])  # backbone taken over
    torch.save({"foo": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ModelError, match="no tensor matches"):
        load_local_weights(build_network("squeezenet", 3).net, tmp_path / "foreign.pt")


@pytest.fixture(scope="module")
def trained(sample_root, tmp_path_factory):
    """SqueezeNet at 64 px trained for a few epochs on 40 real CXRs: 20 non-COVID pneumonia, 20 normal."""
    names = ["non_covid_pneumonia", "normal"]
    samples = samples_from_manifest(sample_root, classes=names)
    pick = [s for s in samples if s.cls == names[0]][:20] + [s for s in samples if s.cls == names[1]][:20]
    images = [read_image(s.image_path) for s in pick]
    labels = [names.index(s.cls) for s in pick]
    cfg = ClassifierConfig(**{**CLASSIFIER_PRESETS["tiny"].__dict__, "epochs": 3, "preprocessing": "stack"})
    arrays = [prepare(i, cfg.preprocessing, cfg.input_size_px) for i in images]
    path = tmp_path_factory.mktemp("clf") / "model.pt"
    steps = []
    result = train_classifier(cfg, arrays, labels, names, path, progress=lambda d, t: steps.append((d, t)))
    return result, images, labels, names, steps, pick


def test_training_writes_a_checkpoint_that_predicts_probabilities(trained):
    result, images, labels, names, steps, _ = trained
    assert result.checkpoint_path.is_file() and result.model_version.startswith("cls-squeezenet-")
    assert steps[-1][0] == steps[-1][1] > 0  # the progress callback reached its total
    assert len(result.history) == 3 and all(h["images"] > 0 for h in result.history)
    clf = Classifier.from_checkpoint(result.checkpoint_path)
    assert clf.class_names == names and clf.model_version == result.model_version
    proba = clf.predict_proba(images[:6])
    assert proba.shape == (6, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)


def test_validation_stops_early_divides_the_lr_and_keeps_the_best_epoch(trained, tmp_path):
    """Section 4.1 on real CXRs: the validation set is the training set with its labels swapped, so the
    better the network learns, the worse it validates. Training must stop `patience` epochs after its
    best validation loss, divide the learning rate by 5 after each `lr_patience` miss, and save the
    best epoch's weights (their validation loss is the best one recorded)."""
    _, images, labels, names, _, _ = trained
    cfg = ClassifierConfig(**{**CLASSIFIER_PRESETS["tiny"].__dict__, "epochs": 12, "preprocessing": "stack",
                              "patience": 2, "lr_patience": 0})
    arrays = [prepare(i, cfg.preprocessing, cfg.input_size_px) for i in images]
    swapped = [1 - v for v in labels]
    result = train_classifier(cfg, arrays, labels, names, tmp_path / "m.pt", validation=(arrays, swapped))
    history = result.history
    assert result.stopped_early and len(history) == result.best_epoch + cfg.patience < cfg.epochs
    losses = [h["val_loss"] for h in history]
    assert losses[result.best_epoch - 1] == min(losses)
    for before, after in zip(history, history[1:]):  # lr_patience 0: every epoch without a new best divides by 5
        missed = before["val_loss"] > min(losses[: before["epoch"] - 1], default=float("inf"))
        assert after["lr"] == pytest.approx(before["lr"] * (cfg.lr_factor if missed else 1.0))
    clf = Classifier.from_checkpoint(result.checkpoint_path)
    proba = clf.predict_proba(images)
    kept_loss = -np.mean(np.log(np.clip(proba[np.arange(len(swapped)), swapped], 1e-12, None)))
    assert kept_loss == pytest.approx(min(losses), rel=1e-4)


def test_a_time_budget_ends_training_at_the_first_batch_past_it(trained, tmp_path):
    _, images, labels, names, _, _ = trained
    cfg = ClassifierConfig(**{**CLASSIFIER_PRESETS["tiny"].__dict__, "epochs": 5, "max_train_s": 0.0})
    arrays = [prepare(i, cfg.preprocessing, cfg.input_size_px) for i in images]
    result = train_classifier(cfg, arrays, labels, names, tmp_path / "m.pt")
    assert len(result.history) == 1 and result.history[0]["images"] == cfg.batch_size  # one batch, then it stops
    assert Classifier.from_checkpoint(result.checkpoint_path).model_version == result.model_version


def test_evaluation_counts_its_images_and_refuses_a_class_never_seen(trained):
    result, images, labels, names, _, _ = trained
    clf = Classifier.from_checkpoint(result.checkpoint_path)
    out = clf.evaluate(images[15:25], [names[i] for i in labels[15:25]])  # 5 of each class
    assert out["confusion"].sum(axis=1).tolist() == [5, 5]
    assert out["proba"].shape == (10, 2)
    assert out["report"]["overall"]["n"] == 10
    with pytest.raises(ModelError, match=r"never saw class\(es\) \['sars'\] \(first at image #1\)"):
        clf.evaluate(images[:3], [names[0], "sars", names[1]])


def test_a_corrupt_checkpoint_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a classifier checkpoint"):
        Classifier.from_checkpoint(bad)


def test_one_class_only_is_refused(tmp_path):
    arr = [np.zeros((64, 64, 3), np.float32)] * 4
    with pytest.raises(TrainingError, match="at least 2 classes"):
        train_classifier(CLASSIFIER_PRESETS["tiny"], arr, [0, 0, 0, 0], ["a", "b"], tmp_path / "m.pt")


def test_score_cam_maps_of_a_trained_classifier(trained, sample_root):
    result, images, *_ = trained
    clf = Classifier.from_checkpoint(result.checkpoint_path)
    image = images[0]
    sal, cls = saliency_for(clf, image, None, None, max_maps=32)
    assert sal.shape == (64, 64) and sal.dtype == np.float32
    assert sal.min() == pytest.approx(0.0) and float(sal.max()) in (pytest.approx(1.0), 0.0)  # scaled, or no evidence
    assert cls == int(np.argmax(clf.predict_proba([image])[0]))
    # the segmented variant: a lung mask given, the map is computed on the lung-only input
    seg_clf = Classifier(clf.model, ClassifierConfig(**{**clf.config.__dict__, "input_mode": "segmented"}),
                         clf.class_names, clf.model_version)
    lung = np.zeros(image.shape, np.uint8)
    lung[image.shape[0] // 4 : 3 * image.shape[0] // 4, : image.shape[1] // 2] = 255
    seg, _ = saliency_for(seg_clf, image, lung, 0, max_maps=32)
    assert seg.shape == (64, 64) and not np.allclose(seg, sal)
    with pytest.raises(ModelError, match="lung mask"):
        seg_clf.prepare(image, None)


def test_score_cam_weights_follow_the_class_score():
    """A hand-built network with two maps (the image's left and right halves) whose class-0 logit is the
    mean of the left half: the left map gets the larger weight, so the saliency lies on the left."""

    class Halves(torch.nn.Module):
        def forward(self, x):
            left = torch.zeros_like(x[:, :1])
            left[..., : x.shape[-1] // 2] = 1
            return torch.cat([x[:, :1] * left, x[:, :1] * (1 - left)], 1)

    class Left(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = Halves()

        def forward(self, x):
            f = self.features(x)
            left = f[:, 0, :, : f.shape[-1] // 2].mean((1, 2))
            return torch.stack([10 * left, torch.zeros_like(left)], 1)

    x = torch.rand(1, 3, 32, 32)
    net = Left()
    sal, cls = score_cam(net, x, net.features, class_index=0, max_maps=None)
    assert cls == 0
    # eq. 6: the right map leaves the class-0 score at the black baseline's (p = 0.5), so its weight is
    # exactly 0 and nothing of it shows (a softmax over the maps would give it a weight above 0)
    assert sal[:, 16:].max() == 0.0
    assert sal[:, :16].max() == pytest.approx(1.0)


def test_score_cam_is_empty_when_no_map_raises_the_score():
    """A network whose class-0 score only falls when parts of the image are masked: every weight of
    eq. 6 is <= 0, and the saliency is empty rather than an invented location."""

    class Dark(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Identity()

        def forward(self, x):
            f = self.features(x)
            return torch.stack([-10 * f.mean((1, 2, 3)), torch.zeros(x.shape[0])], 1)

    net = Dark()
    sal, _ = score_cam(net, torch.rand(1, 3, 16, 16), net.features, class_index=0, max_maps=None)
    assert sal.shape == (16, 16) and not sal.any()
