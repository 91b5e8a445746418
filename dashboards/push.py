"""Upload the dashboards to an existing Grafana through its HTTP API (``grafana-client``).

For a Grafana that is not the compose stack's (which provisions dashboards/json/ itself):
the folder is created when missing, every dashboard is saved with ``overwrite`` (same uid,
new version), and the ``datasource`` template variable can be pointed at that Grafana's
Prometheus datasource.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .names import DATASOURCE_VARIABLE, FOLDER_TITLE, FOLDER_UID

JSON_DIR = Path(__file__).resolve().parent / "json"


class PushError(RuntimeError):
    """The upload failed; the message says what Grafana answered."""


@dataclass(frozen=True)
class Pushed:
    uid: str
    title: str
    version: int | None
    url: str | None


def load_dashboards(json_dir: Path = JSON_DIR) -> list[dict[str, Any]]:
    files = sorted(json_dir.glob("*.json"))
    if not files:
        raise PushError(f"no dashboards in {json_dir}; run 'jiancha dashboards build'")
    return [json.loads(p.read_text(encoding="utf-8")) for p in files]


def with_datasource(dashboard: dict[str, Any], uid: str) -> dict[str, Any]:
    """The dashboard with its ``datasource`` variable preset to the datasource ``uid``."""
    d = copy.deepcopy(dashboard)
    for var in d.get("templating", {}).get("list", []):
        if var.get("type") == "datasource" and var.get("name") == DATASOURCE_VARIABLE:
            var["current"] = {"selected": True, "text": uid, "value": uid}
    return d


def push(url: str, token: str | None, *, json_dir: Path = JSON_DIR, folder_uid: str = FOLDER_UID,
         folder_title: str = FOLDER_TITLE, datasource_uid: str | None = None,
         message: str = "jiancha dashboards push", timeout: float = 10.0) -> list[Pushed]:
    """Create the folder if needed and save every dashboard of ``json_dir`` into it.

    ``token`` is a Grafana service-account token (sent as ``Authorization: Bearer``); without
    it, credentials in the URL (``http://user:password@host:3000``) are used, if any."""
    import niquests
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException

    dashboards = load_dashboards(json_dir)
    api = GrafanaApi.from_url(url, credential=token or None, timeout=timeout)
    try:
        try:
            api.folder.get_folder(folder_uid)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.folder.create_folder(folder_title, uid=folder_uid)
        pushed = []
        for dashboard in dashboards:
            body = with_datasource(dashboard, datasource_uid) if datasource_uid else dashboard
            body = {**body, "id": None}  # matched by uid, never by a local id
            answer = api.dashboard.update_dashboard({
                "dashboard": body, "folderUid": folder_uid, "overwrite": True,
                "message": message})
            answer = answer if isinstance(answer, dict) else {}
            pushed.append(Pushed(uid=body["uid"], title=body["title"],
                                 version=answer.get("version"), url=answer.get("url")))
        return pushed
    except GrafanaException as exc:
        raise PushError(f"Grafana at {url} refused: {exc.message}") from None
    except niquests.exceptions.RequestException as exc:
        raise PushError(f"cannot reach Grafana at {url}: {exc}") from None
