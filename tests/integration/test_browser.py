"""An RA reviews a task in a real browser (Playwright driving Debian's Chromium, headless): log in, open
the task, see the prediction, choose reject, paint a stroke, submit; the read-back gives reject and a mask
that differs from the prediction where the stroke went. A screenshot is saved."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from annotator.labelstudio.client import LabelStudio
from annotator.labelstudio.tasks import TaskIn

pytestmark = pytest.mark.integration

SCREENSHOT_COPY = Path("/tmp/ls_screenshot.png")  # for a person to look at; the test's own copy is in tmp_path


def _green_share(png: Path) -> float:
    """Share of the pixels that are the Lung label's green (the brush colour #00ff00 over the image)."""
    import cv2

    bgr = cv2.imread(str(png))
    b, g, r = (bgr[:, :, i].astype(int) for i in range(3))
    return float(np.mean((g > 150) & (g - r > 60) & (g - b > 60)))


def test_ra_rejects_and_paints_in_the_browser(ls_settings, ls_server, stored_images, browser, tmp_path):
    ls = LabelStudio(ls_settings)
    project_id = ls.ensure_project("ra_review", round_key="it-browser")
    image = stored_images[0]
    task = TaskIn(image.image_id, "ra_review", image.path, round_id=1, prediction_mask=image.mask,
                  model_version="unet-resnet18-browser01", score=0.93)
    task_id = ls.import_tasks(project_id, [task]).task_ids[task.key]

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(f"{ls_server.url}/user/login")
    page.fill("input[name=email]", ls_settings.labelstudio_username)
    page.fill("input[name=password]", ls_settings.labelstudio_password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url)
    page.goto(f"{ls_server.url}/projects/{project_id}/data?task={task_id}")

    # the prediction is there: its tab (version shortened by the UI, score 93.00%), its region, green pixels
    page.get_by_text("93.00%").first.wait_for()
    page.locator(".konvajs-content").first.wait_for()
    page.get_by_text("Lung", exact=True).last.wait_for()  # the region in the regions list
    page.wait_for_timeout(1000)
    canvas = page.locator(".konvajs-content").first.bounding_box()
    before = tmp_path / "before.png"
    page.screenshot(path=str(before), clip=canvas)
    assert _green_share(before) > 0.15  # the lungs are painted green on the image
    page.locator("label", has_text="reject").first.click()
    page.get_by_text("Lung", exact=True).first.click()  # the brush label
    x = canvas["x"] + canvas["width"] * 0.5  # down the mediastinum, outside both lungs
    y0, y1 = canvas["y"] + canvas["height"] * 0.3, canvas["y"] + canvas["height"] * 0.7
    page.mouse.move(x, y0)
    page.mouse.down()
    for k in range(1, 21):
        page.mouse.move(x, y0 + (y1 - y0) * k / 20)
    page.mouse.up()
    page.wait_for_timeout(500)
    shot = tmp_path / "ra_review_task.png"
    page.screenshot(path=str(shot))
    shutil.copy(shot, SCREENSHOT_COPY)
    page.get_by_role("button", name="Submit").click()

    deadline = time.monotonic() + 30
    outs = []
    while not outs and time.monotonic() < deadline:
        outs = ls.fetch_annotations(project_id)
        time.sleep(0.5)
    page.close()
    (out,) = outs
    assert out.valid and out.decision == "reject" and out.key == task.key
    assert out.model_version == "unet-resnet18-browser01" and out.annotator == ls_settings.labelstudio_username
    assert out.lead_time_s is not None and out.lead_time_s > 0
    assert out.mask.shape == image.mask.shape
    added = (out.mask > 0) & (image.mask == 0)
    removed = (out.mask == 0) & (image.mask > 0)
    h, w = image.mask.shape
    cols = np.nonzero(added.any(axis=0))[0]
    rows = np.nonzero(added.any(axis=1))[0]
    assert added.sum() > 100 and removed.sum() == 0  # the stroke added pixels, erased none
    assert abs((cols.min() + cols.max()) / 2 - w / 2) < w * 0.05  # where it was painted: the middle column
    assert rows.min() >= h * 0.25 and rows.max() <= h * 0.75
    assert shot.stat().st_size > 10_000
