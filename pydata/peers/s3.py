"""The S3 setting: moto's S3 server on 127.0.0.1, in a process of its own, and uploads to it.

The server runs in a spawned process so that its request handling does not share a GIL with
anything measured. While it runs, this process's environment (inherited by every run) points
the AWS clients at dummy credentials and missing config files, drops proxies and endpoint
overrides, and sets ``S3_ENDPOINT_URL`` (MosaicML Streaming's endpoint variable); nothing but
127.0.0.1 is contacted. Objects live in the server's memory, so a "cold" S3 epoch is cold on the
client side only (an empty cache directory), which is what a training job sees.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["BUCKET", "local_aws_environment", "s3_server", "upload"]

BUCKET = "pydata-peers"
_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
_UNSET = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
          "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
          "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_ROLE_ARN",
          "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
          "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CA_BUNDLE")


@contextmanager
def local_aws_environment(scratch: Path) -> Iterator[None]:
    """An environment in which AWS clients talk only to a local server: proxies, profiles,
    endpoint overrides and instance-metadata lookups removed, dummy credentials, config files
    that do not exist (under ``scratch``), ``NO_PROXY`` for loopback. Restored afterwards."""
    saved = dict(os.environ)
    for name in _UNSET:
        os.environ.pop(name, None)
    os.environ.update({**_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_CONFIG_FILE": str(scratch / "missing" / "config"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "missing" / "credentials"),
                       "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost",
                       "no_proxy": "127.0.0.1,localhost"})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _boto3() -> Any:
    """boto3 (untyped; imported here so that ``import pydata.peers`` does not need it)."""
    return importlib.import_module("boto3")


def _without_server_header(app: Any) -> Any:
    """Drops moto's own ``Server`` header (aiohttp's strict parser rejects the duplicate)."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [(k, v) for k, v in headers if k.lower() != "server"], exc_info)

        return app(environ, start)

    return wrapped


def _serve(ready: Any, stop: Any) -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        wsgi = getattr(server, "_server", None)  # private in moto 5: without it, no header fix
        if wsgi is not None and hasattr(wsgi, "app"):
            wsgi.app = _without_server_header(wsgi.app)
        ready.put(server.get_host_and_port())
        stop.wait()
    finally:
        server.stop()


@contextmanager
def s3_server(scratch: Path) -> Iterator[str]:
    """Runs the server with a bucket ``BUCKET``; yields its endpoint URL. The environment is
    restored and the server stopped afterwards.

    Raises:
        ImportError: moto (the test extra) is not installed.
    """
    boto3 = _boto3()
    import moto.server  # noqa: F401  (fail here, with the package's name, not in the child)

    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=_serve, args=(ready, stop), name="peers-s3", daemon=True)
    with local_aws_environment(scratch):
        try:
            process.start()
            host, port = ready.get(timeout=120)
            endpoint = f"http://{host}:{port}"
            os.environ["S3_ENDPOINT_URL"] = endpoint
            client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
            client.close()
            yield endpoint
        finally:
            stop.set()
            process.join(30)
            if process.is_alive():
                process.terminate()
                process.join()


def upload(local: Path, endpoint: str, prefix: str) -> str:
    """Puts every file under ``local`` at ``s3://BUCKET/prefix/...``; returns that URL."""
    client = _boto3().session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")
    try:
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(local).as_posix()}")
    finally:
        client.close()
    return f"s3://{BUCKET}/{prefix}"
