"""`POST /model/reload`: the statuses it answers are the ones its OpenAPI entry lists, and every swap
refusal (`unsafe_path` included) is a 409 with the old model still serving."""

from __future__ import annotations

from pathlib import Path

import httpx

from edge_shared.repository import ModelRepository
from edge_shared.scoring import ModelInfo
from edge_tools.fixtures import FixtureCatalog, replace_manifest
from inference_module import errors
from inference_module.api import create_app
from inference_module.api.errors import status_for
from tests.inference.helpers import install_model, serve
from tests.inference.test_api import assert_error, settings_for


async def test_every_status_reload_answers_is_in_its_openapi_entry(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    token = "reload-token"
    seen: set[int] = set()
    async with serve(create_app(settings_for(model_root, api_token=token))) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            authorized = {"Authorization": f"Bearer {token}"}
            documented = (await client.get("/openapi.json")).json()["paths"]["/model/reload"]["post"]

            nothing = await client.post("/model/reload", headers=authorized)
            assert_error(nothing, 409, "no_current_model")
            assert_error(await client.post("/model/reload"), 401, "unauthorized")
            cross_site = {**authorized, "Origin": "https://elsewhere.example", "Sec-Fetch-Site": "cross-site"}
            assert_error(await client.post("/model/reload", headers=cross_site), 403, "cross_site_request")

            install_model(model_root, catalog, "tiny-yolo-1", version="v1")
            loaded = await client.post("/model/reload", headers=authorized)
            assert loaded.status_code == 200 and ModelInfo.model_validate_json(loaded.content).version == "v1"

            install_model(model_root, catalog, "tiny-yolo-2", version="v2")
            escaped = ModelRepository(model_root).read_manifest("v2").model_file
            replace_manifest(model_root, "v2", model_file=f"../../{escaped}")  # outside the root
            escaping = await client.post("/model/reload", headers=authorized)
            assert_error(escaping, 409, "unsafe_path")
            still = ModelInfo.model_validate_json((await client.get("/model")).content)
            assert still.version == "v1"  # refused before anything was unloaded
            seen = {r.status_code for r in (nothing, loaded, escaping)} | {401, 403}
    # The one status no request provokes on its own: a concurrent unloading swap failed.
    seen.add(status_for(errors.NoModelError("no model is loaded")))
    assert {int(status) for status in documented["responses"]} == seen
