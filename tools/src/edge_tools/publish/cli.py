"""`edge-model` command line: publish, status, rollback, keygen; rollout and fleet (edge_tools.rollout).

`publish --delta-from BASE` also uploads an `emdelta/1` delta from BASE (docs/delta.md) and names it in
`Delta` next to the full `DownloadUrl`; every published ZIP is kept in a local cache for later deltas.
Connection strings come from options or the environment (`EDGE_HUB_CONNECTION_STRING`,
`EDGE_STORAGE_CONNECTION_STRING`) and are never printed; neither is the SAS URL.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, TypeVar

from pydantic import BaseModel, ValidationError

from edge_shared.delta import FORMAT as DELTA_FORMAT
from edge_shared.desired import DeltaFields
from edge_shared.errors import InvalidDesiredError
from edge_shared.names import check_file_name, check_version
from edge_shared.redaction import redact, redact_url
from edge_shared.reported import ActiveModel, LoaderReported, ModelUpdate
from edge_tools.publish.blob import download_package_by_version, ssl_context, upload_package
from edge_tools.publish.connstr import ConnectionStringError, HubConnection, parse_connection_string
from edge_tools.publish.delta import (
    DeltaPublishError,
    VerifiedDelta,
    build_verified_delta,
    cache_package,
    cache_path,
    default_cache_dir,
)
from edge_tools.publish.hub import HubError, HubServiceClient
from edge_tools.publish.options import add_hub_options, add_storage_options
from edge_tools.publish.package import ModelPackage, PackageError, load_package
from edge_tools.publish.signing import generate_key_pair, sign_digest
from edge_tools.rollout import cli as rollout_cli
from edge_tools.rollout.plan import PlanError
from edge_tools.rollout.runner import RolloutError


class CliError(RuntimeError):
    """A user-facing failure: printed as one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args, sys.stdout)
        return result
    except (
        CliError,
        PackageError,
        ConnectionStringError,
        HubError,
        DeltaPublishError,
        OSError,
        PlanError,
        RolloutError,
        InvalidDesiredError,
    ) as exc:
        sys.stderr.write(f"edge-model: error: {redact(str(exc))}\n")
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-model", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    commands = parser.add_subparsers(dest="command", required=True)

    publish = commands.add_parser("publish", help="upload a model package and point the loader's twin at it")
    publish.add_argument("source", type=Path, help="model folder or ZIP")
    publish.add_argument(
        "--version",
        required=True,
        help="version label (the `Version` desired property, docs/architecture.md §3)",
    )
    publish.add_argument(
        "--file-name", help="blob/ZIP name (default: the ZIP's name or <folder>-<version>.zip)"
    )
    publish.add_argument("--container", default="models")
    publish.add_argument("--sas-hours", type=float, default=72.0, help="SAS validity (default 72 h)")
    publish.add_argument("--sign", type=Path, metavar="KEY", help="Ed25519 private key (PEM) to sign with")
    publish.add_argument("--no-progress", action="store_true", help="no upload progress bar")
    publish.add_argument(
        "--delta-from",
        metavar="VERSION",
        help="also publish a delta from this published version (docs/delta.md)",
    )
    publish.add_argument(
        "--store-model",
        action="store_true",
        help="when zipping a folder, store the model uncompressed (deltas then apply without a deflate pass)",
    )
    publish.add_argument(
        "--repack",
        action="store_true",
        help="rewrite a ZIP as a folder is zipped, so a device applying a delta to it re-deflates its "
        "model in parallel chunks (the published ZIP then differs from the file)",
    )
    publish.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="published ZIPs kept for deltas (default $EDGE_MODEL_CACHE_DIR or ~/.cache/edge-model)",
    )
    add_hub_options(publish, device=True)
    add_storage_options(publish)
    publish.set_defaults(handler=cmd_publish)

    status = commands.add_parser("status", help="print both modules' reported properties")
    status.add_argument("--inference-module", default="inference")
    add_hub_options(status, device=True)
    status.set_defaults(handler=cmd_status)

    rollback = commands.add_parser("rollback", help="make an installed version current again (direct method)")
    rollback.add_argument("version", nargs="?", help="version to restore (default: the previous one)")
    add_hub_options(rollback, device=True)
    rollback.set_defaults(handler=cmd_rollback)

    keygen = commands.add_parser("keygen", help="create an Ed25519 key pair for signing models")
    keygen.add_argument("--out", type=Path, default=Path("."), help="folder for signing-key.pem / .pub.pem")
    keygen.set_defaults(handler=cmd_keygen)

    rollout_cli.register(commands)
    return parser


def _hub(args: argparse.Namespace) -> tuple[HubServiceClient, str]:
    if not args.hub_connection_string:
        raise CliError("no IoT Hub connection string (--hub-connection-string or EDGE_HUB_CONNECTION_STRING)")
    connection = HubConnection.parse(args.hub_connection_string)
    device = args.device_id or parse_connection_string(args.hub_connection_string).get("DeviceId")
    if not device:
        raise CliError("no device id (--device-id or EDGE_DEVICE_ID)")
    verify: Any = ssl_context(args.hub_ca_file) if args.hub_ca_file else True
    return HubServiceClient(connection, verify=verify), device


def cmd_publish(args: argparse.Namespace, out: TextIO) -> int:
    if not args.storage_connection_string:
        raise CliError(
            "no storage connection string (--storage-connection-string or EDGE_STORAGE_CONNECTION_STRING)"
        )
    package = load_package(
        args.source,
        version=args.version,
        file_name=args.file_name,
        store_model=args.store_model,
        repack=args.repack,
    )
    _check_names(package.file_name, args.version, args.delta_from)
    signature = sign_digest(args.sign.read_bytes(), package.sha256_bytes) if args.sign else None
    cache_dir: Path = args.cache_dir or default_cache_dir()
    delta = _build_delta(args, package, cache_dir) if args.delta_from else None
    hub, device = _hub(args)
    progress = None if args.no_progress or args.json else _ProgressBar(sys.stderr, package.size)
    url = upload_package(
        args.storage_connection_string,
        args.container,
        package,
        sas_ttl=timedelta(hours=args.sas_hours),
        ca_file=args.storage_ca_file,
        progress=progress,
        version=args.version,
    )
    delta_fields: DeltaFields | None = None
    if delta is not None and delta.build.decision == "delta":
        delta_url = upload_package(
            args.storage_connection_string,
            args.container,
            ModelPackage(file_name=delta.file_name, data=delta.build.delta),
            sas_ttl=timedelta(hours=args.sas_hours),
            ca_file=args.storage_ca_file,
            content_type="application/octet-stream",
        )
        delta_fields = DeltaFields(
            base_version=args.delta_from,
            download_url=delta_url,
            content_sha256=delta.sha256_hex,
            format=DELTA_FORMAT,
        )
    desired = package.desired(
        url,
        args.version,
        signature=signature,
        delta=delta_fields,
        clear_unset=True,  # a stale signature or delta from an earlier publish is removed
        allow_insecure_http=True,  # the storage account's own endpoint, as the user configured it
    )
    with hub:
        twin = hub.patch_module_desired(device, args.module, desired)
    cache_package(cache_dir, args.version, package)
    summary = {
        "fileName": package.file_name,
        "version": args.version,
        "size": package.size,
        "contentMD5": package.md5_b64,
        "contentSHA256": package.sha256_hex,
        "signed": signature is not None,
        "blob": redact_url(url),
        "device": device,
        "module": args.module,
        "desiredVersion": (twin.get("properties", {}).get("desired", {}) or {}).get("$version"),
        "delta": _delta_summary(delta, args.delta_from),
    }
    _emit(out, summary, args.json)
    return 0


def _check_names(file_name: str, version: str, base_version: str | None) -> None:
    """Refuse names the loader would refuse before anything is uploaded."""
    checks = [("--version", version, check_version), ("file name", file_name, check_file_name)]
    if base_version is not None:
        checks.append(("--delta-from", base_version, check_version))
    for what, value, check in checks:
        try:
            check(value)
        except ValueError as exc:
            raise CliError(f"{what} {value!r} {exc}") from None


def _build_delta(args: argparse.Namespace, package: ModelPackage, cache_dir: Path) -> VerifiedDelta:
    """Base ZIP from the cache, else from Blob Storage (by version metadata); then a checked delta."""
    cached = cache_path(cache_dir, args.delta_from)
    if cached.is_file():
        base_zip = cached.read_bytes()
    else:
        found = download_package_by_version(
            args.storage_connection_string, args.container, args.delta_from, ca_file=args.storage_ca_file
        )
        if found is None:
            raise CliError(
                f"base version {args.delta_from!r} is neither cached in {cache_dir} "
                f"nor published in container {args.container!r}"
            )
        base_zip = found
    return build_verified_delta(base_zip, package, base_version=args.delta_from, version=args.version)


def _delta_summary(delta: VerifiedDelta | None, base_version: str | None) -> dict[str, Any] | None:
    if delta is None:
        return None
    build = delta.build
    return {
        "baseVersion": base_version,
        "published": build.decision == "delta",
        "size": len(build.delta),
        "shareOfZip": round(build.ratio, 4),
        "reason": build.reason,
        "files": {f.name: f.kind for f in build.files},
    }


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    hub, device = _hub(args)
    with hub:
        loader = hub.get_module_twin(device, args.module)
        inference = hub.get_module_twin(device, args.inference_module)
    loader_reported = loader.get("properties", {}).get("reported", {})
    inference_reported = inference.get("properties", {}).get("reported", {})
    if args.json:
        _emit(out, {args.module: loader_reported, args.inference_module: inference_reported}, True)
        return 0
    rows = status_rows(loader_reported, inference_reported, args.module, args.inference_module)
    width = max(len(f"{m} {k}") for m, k, _ in rows)
    for module, key, value in rows:
        out.write(f"{(module + ' ' + key).ljust(width)}  {'-' if value in (None, '') else value}\n")
    return 0


def status_rows(
    loader_reported: Mapping[str, Any], inference_reported: Mapping[str, Any], loader: str, inference: str
) -> list[tuple[str, str, object]]:
    """The status table's rows, read through the shared reported-property models."""
    # null is how a twin deletes a property: what is null is not reported
    present = {key: value for key, value in loader_reported.items() if value is not None}
    loader_state = _read_reported(LoaderReported, present, loader)
    update = loader_state.model_update if "model_update" in loader_state.model_fields_set else None
    active_value = inference_reported.get("ActiveModel")
    active = _read_reported(ActiveModel, active_value, inference) if active_value else None
    error = update.error if update else None
    return [
        ("loader", "latest model", loader_state.latest_file_name),
        ("loader", "update state", update.state.value if update else None),
        ("loader", "update version", update.version if update else None),
        ("loader", "progress", _progress_text(update)),
        ("loader", "attempt", update.attempt if update else None),
        ("loader", "error", f"{error.code}: {error.message}" if error else None),
        ("loader", "next retry at", _time(update.next_retry_at if update else None)),
        ("loader", "installed", ", ".join(loader_state.installed_models) or None),
        ("inference", "active version", active.version if active else None),
        ("inference", "runtime", active.runtime if active else None),
        ("inference", "loaded at", _time(active.loaded_at if active else None)),
    ]


def cmd_rollback(args: argparse.Namespace, out: TextIO) -> int:
    hub, device = _hub(args)
    payload = {"version": args.version} if args.version else {}
    with hub:
        result = hub.invoke_module_method(device, args.module, "rollback", payload)
    _emit(out, result, args.json)
    status = int(result.get("status", 500))
    return 0 if status < 300 else 1


def cmd_keygen(args: argparse.Namespace, out: TextIO) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = args.out / "signing-key.pem", args.out / "signing-key.pub.pem"
    if private_path.exists():
        raise CliError(f"{private_path} exists; refusing to overwrite a signing key")
    public_b64 = generate_key_pair(private_path, public_path)
    out.write(f"private key: {private_path}\npublic key:  {public_path}\n")
    out.write(f"add to the loader's LOADER_TRUSTED_KEYS: {public_b64}\n")
    return 0


_Reported = TypeVar("_Reported", bound=BaseModel)


def _read_reported(model: type[_Reported], value: object, module: str) -> _Reported:
    """A module's reported properties through the shared contract; what does not fit is named."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in error["loc"]) or "-" for error in exc.errors()})
        raise CliError(
            f"{module}'s reported {model.__name__} does not follow the contract: {', '.join(fields)}"
        ) from None


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _progress_text(update: ModelUpdate | None) -> str | None:
    if update and update.bytes_total:
        return f"{update.bytes_done}/{update.bytes_total} bytes ({update.percent or 0:.0f}%)"
    return None


def _emit(out: TextIO, data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        out.write(f"{key.ljust(width)}  {json.dumps(value) if isinstance(value, dict | list) else value}\n")


class _ProgressBar:
    """A one-line upload progress bar on stderr (the SDK calls it after each block)."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream, self._total = stream, max(total, 1)

    def __call__(self, current: int, total: int | None) -> None:
        total = total or self._total
        filled = int(30 * current / total)
        self._stream.write(f"\rupload [{'#' * filled}{'.' * (30 - filled)}] {100 * current / total:5.1f}%")
        if current >= total:
            self._stream.write("\n")
        self._stream.flush()


if __name__ == "__main__":
    raise SystemExit(main())
