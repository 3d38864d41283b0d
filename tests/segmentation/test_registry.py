"""The registry: 15 specs, names that fail with the valid list, the thesis' parameter counts, no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from annotator.errors import UnknownNameError
from annotator.segmentation.registry import PARAMETERS, SPECS, ModelSpec, get_spec, list_specs, stored_parameters


def test_fifteen_specs_named_arch_dash_encoder():
    names = [s.name for s in list_specs()]
    assert len(names) == 15 == len(set(names))
    assert "unet-resnet18" in names and "unetplusplus-densenet161" in names and "fpn-inceptionv4" in names


def test_aliases_and_display_names():
    assert get_spec("U-Net-ResNet18").name == "unet-resnet18"
    assert get_spec("unet++_densenet121").name == "unetplusplus-densenet121"
    assert get_spec("fpn-densenet121").display_name == "FPN-DenseNet121"
    assert get_spec("unet-resnet18", input_size_px=128).input_size_px == 128


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        get_spec("unet-vgg16")
    message = str(err.value)
    assert "unet-vgg16" in message and "unet-resnet18" in message and "fpn-inceptionv4" in message
    with pytest.raises(UnknownNameError, match="valid: densenet121, densenet161, inceptionv4, resnet18, resnet50"):
        ModelSpec("unet", "vgg16")
    with pytest.raises(UnknownNameError, match="valid: fpn, unet, unetplusplus"):
        ModelSpec("linknet", "resnet18")


def test_spec_round_trips_through_a_dict():
    spec = ModelSpec("unet", "resnet18", input_size_px=64, decoder_channels=(32, 16, 8, 8, 8))
    assert ModelSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(("name", "params_m"), [("unet-resnet18", 14.32), ("fpn-densenet121", 9.29)])
def test_trainable_parameters_match_thesis_table_11(name, params_m):
    from annotator.segmentation.factory import spec_parameters

    assert round(spec_parameters(get_spec(name)) / 1e6, 2) == params_m


@pytest.mark.parametrize("name", sorted(SPECS))
def test_stored_parameter_count_equals_the_built_network(name):
    """`model list` answers from PARAMETERS: each network, built once here, must have exactly that count."""
    from annotator.segmentation.factory import spec_parameters

    spec = get_spec(name)
    assert stored_parameters(spec) == PARAMETERS[name] == spec_parameters(spec)
    assert stored_parameters(spec.with_input_size(64)) == PARAMETERS[name]  # the input size adds no weights


def test_other_shapes_have_no_stored_count():
    tiny = ModelSpec("unet", "resnet18", input_size_px=64, decoder_channels=(32, 16, 8, 8, 8))
    assert stored_parameters(tiny) is None
    assert stored_parameters(ModelSpec("fpn", "resnet18", classes=3)) is None


def test_light_modules_import_without_torch():
    code = ("import sys; import annotator.segmentation.registry, annotator.segmentation.postprocess, "
            "annotator.segmentation.transform, workflows.stage1, annotator.cli.model, annotator.cli.stage1; "
            "heavy = [m for m in ('torch', 'segmentation_models_pytorch') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "[]"
