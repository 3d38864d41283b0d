"""Every architecture x encoder builds and predicts masks of each image's own size; weights files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from annotator.errors import ModelError
from annotator.segmentation.factory import build_model, count_parameters
from annotator.segmentation.predict import Predictor
from annotator.segmentation.registry import get_spec, list_specs


@pytest.mark.parametrize("name", [s.name for s in list_specs()])
def test_every_spec_builds_and_predicts_each_images_shape(name, odd_images, seed_pairs):
    spec = get_spec(name, input_size_px=64)
    torch.manual_seed(0)
    model = build_model(spec)
    predictor = Predictor(model, spec, f"{name}-untrained")
    images = [odd_images[0], seed_pairs[0][0]]
    probs = predictor.predict_proba(images)
    masks = predictor.predict(images)
    for image, prob, mask in zip(images, probs, masks):
        assert prob.shape == image.shape and prob.dtype == np.float32
        assert 0.0 <= prob.min() and prob.max() <= 1.0
        assert mask.shape == image.shape and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}


def test_local_weights_file_loads_into_the_encoder(tmp_path):
    spec = get_spec("unet-resnet18", input_size_px=64)
    torch.manual_seed(1)
    rgb = build_model(spec.__class__("unet", "resnet18", 64, in_channels=3))
    path = tmp_path / "resnet18-encoder.pth"
    torch.save(rgb.encoder.state_dict(), path)
    model = build_model(spec, weights_path=path)
    # an RGB first convolution is summed over its colour channels for the gray input
    expected = rgb.encoder.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.allclose(model.encoder.conv1.weight, expected)
    assert torch.equal(model.encoder.layer4[1].conv2.weight, rgb.encoder.layer4[1].conv2.weight)
    assert count_parameters(model) == count_parameters(build_model(spec))


def test_weights_of_another_encoder_are_refused(tmp_path):
    other = build_model(get_spec("unet-resnet50", input_size_px=64))
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": other.encoder.state_dict()}, path)
    with pytest.raises(ModelError, match="does not fit the resnet18 encoder of unet-resnet18"):
        build_model(get_spec("unet-resnet18"), weights_path=path)


def test_corrupt_weights_file_is_refused(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="not a readable torch file"):
        build_model(get_spec("unet-resnet18"), weights_path=path)
