"""The five label configs: valid XML that Label Studio's own parser reads, decisions as declared."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from annotator.errors import UnknownNameError
from annotator.labelstudio.queue import BRUSH_TAG, DECISION_TAG, IMAGE_TAG, LUNG_LABEL, QUEUES, get_queue


def test_the_five_queues_are_declared():
    assert sorted(QUEUES) == ["best_of_six", "md_advice", "md_verify", "ra_adjust", "ra_review"]
    assert get_queue("ra_review").decisions == ("accept", "reject", "unsure", "exclude")
    assert get_queue("best_of_six").decisions == ("m1", "m2", "m3", "m4", "m5", "m6", "deny")


def test_unknown_queue_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        get_queue("ra_reveiw")
    assert str(err.value) == "unknown queue 'ra_reveiw'; valid: best_of_six, md_advice, md_verify, ra_adjust, ra_review"


@pytest.mark.parametrize("name", sorted(QUEUES))
def test_config_choices_match_the_spec_and_sit_above_the_image(name):
    spec = get_queue(name)
    root = ET.fromstring(spec.label_config)
    children = [child.tag for child in root]
    choices = root.find(f"Choices[@name='{DECISION_TAG}']")
    assert tuple(c.get("value") for c in choices.findall("Choice")) == spec.decisions
    assert choices.get("toName") == IMAGE_TAG and choices.get("required") == "true"
    assert children.index("Choices") < children.index("Image")
    brush = root.find(f"BrushLabels[@name='{BRUSH_TAG}']")
    assert (brush is not None) == spec.has_brush
    if brush is not None:
        assert [label.get("value") for label in brush.findall("Label")] == [LUNG_LABEL]
    if spec.text_tag:
        assert root.find(f"TextArea[@name='{spec.text_tag}']") is not None
    for field in spec.data_fields:
        assert f"${field}" in spec.label_config


@pytest.mark.parametrize("name", sorted(QUEUES))
def test_label_studio_parses_each_config(name):
    from label_studio_sdk.label_interface import LabelInterface

    li = LabelInterface(get_queue(name).label_config)
    assert li.get_object(IMAGE_TAG).value == "$image"
    assert li.get_control(DECISION_TAG).labels == list(get_queue(name).decisions)
    if get_queue(name).has_brush:
        assert li.get_control(BRUSH_TAG).labels == [LUNG_LABEL]


def test_our_brush_prediction_passes_label_studios_validation(real_pairs):
    from label_studio_sdk.label_interface import LabelInterface

    from annotator.labelstudio.tasks import prediction_payload

    li = LabelInterface(get_queue("ra_review").label_config)
    _, _, mask = real_pairs[0]
    assert li.validate_prediction(prediction_payload(mask, "unet-resnet18-abc", 0.9), return_errors=True) == []
