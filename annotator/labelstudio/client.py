"""Our client of Label Studio's REST API: projects per queue, idempotent task import, read-back.

    ls = LabelStudio(settings)                      # legacy token or PAT, retries with back-off
    project_id = ls.ensure_project("ra_review", round_key="stage2-r1")
    result = ls.import_tasks(project_id, [TaskIn(...), ...])  # -> ImportResult(task_ids={key: ls_task_id})
    outs = ls.fetch_annotations(project_id)         # -> list[AnnotationOut] (annotator.labelstudio.readback)
    ls.connect_backend(project_id, "http://127.0.0.1:9090", token)   # through the SDK

Idempotency: every task carries our key ``<queue>:<round_id>:<image_id>`` in its data (``annotator_key``);
``import_tasks`` lists the keys already in the project and imports only the others, in chunks of at most
100. A chunk whose request failed half-way (time-out after Label Studio committed) is never imported twice:
before a retry the keys are listed again.

Errors: Label Studio down or slow -> retried with exponential back-off, then ``LabelStudioError`` saying
what to run; 401 -> the token is explained; 404 on a project -> the existing project ids are listed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from annotator.config import Settings
from annotator.errors import ImageReadError, LabelStudioError, MaskError
from annotator.labelstudio.queue import QueueSpec, get_queue
from annotator.labelstudio.tasks import TaskIn, image_size, task_payload
from annotator.labelstudio.transport import Transport

log = logging.getLogger(__name__)

CHUNK_SIZE = 100
TITLE_PREFIX = "cxr-annotator"


@dataclass
class ImportResult:
    task_ids: dict[str, int]  # our key -> ls_task_id, for every task asked (new and already there)
    created: int = 0
    existing: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # our key -> why it was not imported
    hidden_in_stream: int = 0  # open tasks whose prediction is of another model_version than the project's


class LabelStudio(Transport):
    """A Label Studio server reached with our token. Every call retries transient failures."""

    def __init__(
        self,
        settings: Settings,
        *,
        timeout_s: float = 60.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(settings.labelstudio_base_url, settings.labelstudio_token, timeout_s=timeout_s,
                         retries=retries, backoff_s=backoff_s, session=session)
        self.settings = settings

    # -- projects ---------------------------------------------------------------------------------
    def list_projects(self) -> list[dict]:
        out: list[dict] = []
        page = 1
        while True:
            data = self.request("GET", "/api/projects", params={"page": page, "page_size": 100})
            out.extend(data["results"])
            if not data.get("next"):
                return out
            page += 1

    def project(self, project_id: int) -> dict:
        """A project's record; an unknown id is an error that lists the ids that exist."""
        try:
            return self.request("GET", f"/api/projects/{int(project_id)}")
        except LabelStudioError as exc:
            if "answered 404" not in str(exc):
                raise
            known = sorted(p["id"] for p in self.list_projects())
            raise LabelStudioError(
                f"unknown Label Studio project id {project_id}; existing: {', '.join(map(str, known)) or 'none'}"
            ) from None

    @staticmethod
    def project_title(queue: QueueSpec, round_key: str | None) -> str:
        return f"{TITLE_PREFIX} · {queue.title}" + (f" · {round_key}" if round_key else "")

    def ensure_project(self, queue: str, *, round_key: str | None = None, double_read_share: float = 0.0) -> int:
        """The project of a queue (and round), created with its label config and local storage if missing.
        ``double_read_share`` > 0: that share of its tasks wants two annotations (Label Studio's overlap)."""
        spec = get_queue(queue)
        title = self.project_title(spec, round_key)
        overlap = {"maximum_annotations": 2 if double_read_share > 0 else 1,
                   "overlap_cohort_percentage": round(100 * double_read_share) if double_read_share > 0 else 100}
        found = [p for p in self.list_projects() if p["title"] == title]
        if found:
            project = found[0]
            change = {k: v for k, v in overlap.items() if project.get(k) != v}
            if project.get("label_config", "").strip() != spec.label_config.strip():
                change["label_config"] = spec.label_config
            if change:
                self.request("PATCH", f"/api/projects/{project['id']}", json=change)
        else:
            project = self.create_once(
                "/api/projects",
                {
                    "title": title,
                    "description": f"{spec.title} ({spec.role}); made by cxr-annotator, queue {spec.name}",
                    "label_config": spec.label_config,
                    "show_collab_predictions": True,
                    **overlap,
                    "sampling": "Sequential sampling",
                    "show_skip_button": False,
                    "enable_empty_annotation": True,
                },
                find=lambda: next((p for p in self.list_projects() if p["title"] == title), None),
            )
        self.ensure_local_storage(project["id"], self.settings.image_store)
        if not spec.has_brush:  # best of six: its task images are the pre-rendered grids
            from annotator.labelstudio.grid import overlay_dir

            self.ensure_local_storage(project["id"], overlay_dir(self.settings))
        return int(project["id"])

    def ensure_local_storage(self, project_id: int, path: Path) -> int:
        """A local-files storage entry of the project rooted at ``path`` (inside the store)."""
        path = Path(path).resolve()
        self._relative_to_store(path)
        path.mkdir(parents=True, exist_ok=True)
        def find() -> dict | None:
            entries = self.request("GET", "/api/storages/localfiles", params={"project": project_id})
            return next((e for e in entries if Path(e["path"]).resolve() == path), None)

        entry = find() or self.create_once(
            "/api/storages/localfiles",
            {"project": project_id, "path": str(path), "title": path.name, "use_blob_urls": False, "regex_filter": ""},
            find=find,
        )
        return int(entry["id"])

    def delete_project(self, project_id: int) -> None:
        self.request("DELETE", f"/api/projects/{int(project_id)}")

    # -- tasks ------------------------------------------------------------------------------------
    def _relative_to_store(self, path: Path) -> str:
        store = self.settings.store_path.resolve()
        try:
            return Path(path).resolve().relative_to(store).as_posix()
        except ValueError:
            raise ImageReadError(path, f"not inside the workspace store {store}; Label Studio serves only files there") from None

    def image_url(self, path: Path) -> str:
        from urllib.parse import quote

        return f"/data/local-files/?d={quote(self._relative_to_store(path))}"

    def iter_tasks(self, project_id: int, *, fields: str = "task_only", page_size: int = 1000):
        """Every task of the project, a page at a time (``fields="all"`` adds the data manager's columns)."""
        page = 1
        while True:
            try:
                data = self.request("GET", "/api/tasks", params={"project": project_id, "page": page,
                                                                 "page_size": page_size, "fields": fields})
            except LabelStudioError as exc:
                if "answered 404" in str(exc) and page > 1:  # past the last page
                    return
                raise
            tasks = data["tasks"] if isinstance(data, dict) else data
            yield from tasks
            total = data.get("total", len(tasks)) if isinstance(data, dict) else len(tasks)
            if not tasks or page * page_size >= total:
                return
            page += 1

    def list_task_keys(self, project_id: int) -> dict[str, int]:
        """Our key -> ls_task_id of every task of the project that carries one."""
        out: dict[str, int] = {}
        for task in self.iter_tasks(project_id):
            key = (task.get("data") or {}).get("annotator_key")
            if key:
                out[key] = int(task["id"])
        return out

    def task_payload(self, task: TaskIn, size: tuple[int, int]) -> dict:
        """The task as Label Studio imports it: its data (image URL, our key) and inline prediction."""
        return task_payload(task, size, self.image_url(task.image_path))

    def import_tasks(self, project_id: int, tasks: Sequence[TaskIn], *, chunk_size: int = CHUNK_SIZE,
                     progress=None) -> ImportResult:
        """Import the tasks not yet in the project (by our key), with inline predictions, <=100 a request.

        A task whose image is missing or whose prediction has another size than its image is not imported:
        it is listed in ``ImportResult.failed`` with the reason, and the others go on.
        """
        chunk_size = max(1, min(int(chunk_size), CHUNK_SIZE))
        self.project(project_id)  # an unknown id fails here, with the list of known ones
        keys = [t.key for t in tasks]
        dupes = {k for k in keys if keys.count(k) > 1} if len(set(keys)) != len(keys) else set()
        if dupes:
            raise LabelStudioError(f"the same task is asked twice: {sorted(dupes)[:5]}")
        existing = self.list_task_keys(project_id)
        result = ImportResult(task_ids={k: existing[k] for k in keys if k in existing})
        result.existing = len(result.task_ids)
        new = [task for task in tasks if task.key not in existing]
        versions: set[str] = set()
        for start in range(0, len(new), chunk_size):  # payloads (RLE) made a chunk at a time: progress shows both
            part = new[start : start + chunk_size]
            chunk: list[tuple[str, dict]] = []
            for task in part:
                try:
                    chunk.append((task.key, self.task_payload(task, image_size(task.image_path))))
                except (ImageReadError, MaskError) as exc:
                    result.failed[task.key] = str(exc)
                    log.warning("task %s not imported: %s", task.key, exc)
            versions |= {p["predictions"][0]["model_version"] for _, p in chunk if "predictions" in p}
            if chunk:
                ids = self._import_chunk(project_id, chunk)
                result.task_ids.update(ids)
                result.created += len(ids)
            if progress is not None:
                progress(len(part))
        if len(versions) == 1:
            result.hidden_in_stream = self.sync_model_version(project_id, versions.pop())
        elif len(versions) > 1:
            mixed = sorted(versions)
            log.warning("project %d: one import with predictions of %d versions (%s); Label Studio's labelling "
                        "stream shows only one", project_id, len(mixed), ", ".join(mixed))
        return result

    def _import_chunk(self, project_id: int, chunk: list[tuple[str, dict]]) -> dict[str, int]:
        path = f"/api/projects/{project_id}/import"
        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
                # the failed request may have landed: import only what is still missing
                present = self.list_task_keys(project_id)
                landed = {k: present[k] for k, _ in chunk if k in present}
                chunk = [(k, p) for k, p in chunk if k not in present]
                if not chunk:
                    return landed
            else:
                landed = {}
            try:
                data = self.request("POST", path, params={"return_task_ids": "true"},
                                    json=[p for _, p in chunk], retry=False)
            except LabelStudioError as exc:
                if "down or too slow" in str(exc) and attempt + 1 < attempts:
                    log.info("import of %d tasks into project %d failed (%s); checking and retrying",
                             len(chunk), project_id, exc)
                    continue
                raise
            ids = data.get("task_ids") or []
            if len(ids) != len(chunk):  # no ids or a surprise count: read them back by key
                present = self.list_task_keys(project_id)
                return {**landed, **{k: present[k] for k, _ in chunk if k in present}}
            return {**landed, **{k: int(i) for (k, _), i in zip(chunk, ids, strict=True)}}
        raise LabelStudioError(f"import into project {project_id} failed after {attempts} attempts")  # pragma: no cover

    def sync_model_version(self, project_id: int, model_version: str) -> int:
        """Point the project at ``model_version`` (Label Studio's labelling stream shows only the predictions
        of the project's version) and count the open tasks whose prediction has another version: their
        masks still show when a task is opened from the data manager, but not in the stream. Returns that
        count (0 when each project holds one network's predictions: use ``round_key``)."""
        if self.project(project_id).get("model_version") != model_version:
            self.request("PATCH", f"/api/projects/{project_id}", json={"model_version": model_version})
        counts = self.request("GET", f"/api/projects/{project_id}/model-versions") or {}
        others = sorted(v for v, n in counts.items() if n and v != model_version)
        if not others:
            return 0
        hidden = 0
        for task in self.iter_tasks(project_id, fields="all"):
            if task.get("total_annotations") or task.get("is_labeled"):
                continue
            versions = {v.strip() for v in str(task.get("predictions_model_versions") or "").split(",") if v.strip()}
            hidden += bool(versions) and model_version not in versions
        if hidden:
            log.warning(
                "project %d: %d open task(s) hold predictions of %s, not %s: Label Studio's labelling stream "
                "shows them without a mask (the data manager still shows it); use one project per network "
                "(round_key) or the same model_version", project_id, hidden, ", ".join(others), model_version,
            )
        return hidden

    def export_tasks(self, project_id: int) -> list[dict]:
        """Every task of the project with its annotations and predictions (Label Studio's JSON export)."""
        self.project(project_id)
        return self.request(
            "GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON", "download_all_tasks": "true"}
        )

    def users(self) -> dict[int, str]:
        data = self.request("GET", "/api/users")
        return {int(u["id"]): u.get("email") or u.get("username") or str(u["id"]) for u in data}

    def fetch_annotations(self, project_id: int) -> list:
        """Every annotation of the project as an AnnotationOut (invalid ones flagged with a message)."""
        from annotator.labelstudio.readback import parse_tasks

        return parse_tasks(self.export_tasks(project_id), project_id=project_id, users=self.users())

    # -- the ML backend -----------------------------------------------------------------------------
    WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")

    def ensure_webhook(self, project_id: int, url: str, token: str) -> int:
        """Label Studio posts the project's annotation events to ``url`` (our backend's /webhook) with the token."""
        self.project(project_id)

        def find() -> dict | None:
            hooks = self.request("GET", "/api/webhooks", params={"project": project_id})
            return next((h for h in hooks if h.get("url") == url and h.get("project") == project_id), None)

        hook = find() or self.create_once(
            "/api/webhooks",
            {"project": project_id, "url": url, "send_payload": True, "send_for_all_actions": False,
             "actions": list(self.WEBHOOK_ACTIONS), "headers": {"Authorization": f"Token {token}"},
             "is_active": True},
            find=find,
        )
        return int(hook["id"])

    def connect_backend(self, project_id: int, url: str, token: str, *, title: str = "cxr-annotator backend") -> int:
        """Connect our ML backend to a project through the SDK (basic auth carries the backend token)."""
        from label_studio_sdk.client import LabelStudio as SDK
        from label_studio_sdk.core.api_error import ApiError

        self.project(project_id)
        # max_retries=0: the SDK would retry a POST that failed with a 5xx, which may have landed
        sdk = SDK(base_url=self.url, api_key=self.settings.labelstudio_token, timeout=self.timeout_s, max_retries=0)
        try:
            for backend in sdk.ml.list(project=project_id):
                if backend.url.rstrip("/") == url.rstrip("/"):
                    return int(backend.id)
            backend = sdk.ml.create(
                url=url, project=project_id, title=title, is_interactive=False,
                auth_method="BASIC_AUTH", basic_auth_user="labelstudio", basic_auth_pass=token,
            )
        except ApiError as exc:
            raise LabelStudioError(
                f"Label Studio could not connect the ML backend at {url} to project {project_id} "
                f"({exc.status_code}): {str(exc.body)[:300]}; is `annotator serve backend` running?"
            ) from exc
        return int(backend.id)


