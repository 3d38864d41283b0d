"""The only code that speaks to Label Studio. No torch here (a test proves it).

Server lifecycle (``annotator.labelstudio.server``)::

    info = start_server(settings)          # 127.0.0.1:<labelstudio_port>, data in <workspace>/labelstudio
    server_status(settings)                # ServerStatus(running, healthy, url, pid, message)
    stop_server(settings)                  # by the pid recorded at start

Queues (``annotator.labelstudio.queue``): ``ra_review``, ``md_advice``, ``ra_adjust``, ``best_of_six``,
``md_verify``; ``get_queue(name)`` -> QueueSpec (label config, decisions, which decisions need a mask).

Client (``annotator.labelstudio.client``)::

    ls = LabelStudio(settings)
    project_id = ls.ensure_project("ra_review", round_key="stage2-r1")     # idempotent, by title
    result = ls.import_tasks(project_id, [TaskIn(image_id, "ra_review", image_path, round_id=...,
                                                 prediction_mask=mask, model_version=v, score=s)])
    result.task_ids   # {"ra_review:<round_id>:<image_id>": ls_task_id}; result.failed: {key: reason}
    outs = ls.fetch_annotations(project_id)   # list[AnnotationOut] (annotator.labelstudio.readback)
    ls.connect_backend(project_id, backend_url, settings.backend_token)   # through the SDK
    ls.ensure_webhook(project_id, backend_url + "/webhook", settings.backend_token)

Best-of-six task images (``annotator.labelstudio.grid``): ``write_best_of_six(settings, image_id, round_id,
gray, six_masks) -> Path`` under ``<store>/overlays``.
"""

from annotator.labelstudio.client import ImportResult, LabelStudio
from annotator.labelstudio.queue import QUEUES, Queue, QueueSpec, get_queue
from annotator.labelstudio.tasks import TaskIn, task_key
from annotator.labelstudio.readback import AnnotationOut
from annotator.labelstudio.server import ServerInfo, ServerStatus, server_status, start_server, stop_server

__all__ = [
    "QUEUES", "AnnotationOut", "ImportResult", "LabelStudio", "Queue", "QueueSpec", "ServerInfo", "ServerStatus",
    "TaskIn", "get_queue", "server_status", "start_server", "stop_server", "task_key",
]
