"""Fixtures shared by the whole suite."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def gc_tester() -> Iterator[Callable[[Any], None]]:
    """Registers objects whose reference cycles must be collectable, and checks at teardown.

    Use it for objects that keep C++ resources alive (mapped files behind numpy views): after
    the test drops them, a full collection must free every registered object.
    """
    import weakref

    refs: list[weakref.ref[Any]] = []

    def register(obj: Any) -> None:
        refs.append(weakref.ref(obj))

    yield register
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert not alive, f"objects still alive after collection: {alive!r}"


# -- datasets ------------------------------------------------------------------------------------


def _bfloat16_bits(values: Any) -> Any:
    """float32 values as bfloat16 bit patterns (uint16), rounded toward zero: numpy has no bfloat16."""
    import numpy as np

    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _column(name: str, field: Any, n: int, seed: int) -> list[Any]:
    """n deterministic values for one field; image- and latent-like tensors come from
    pydata.synthetic, the rest from a seeded generator (sizes vary, empty rows included)."""
    import numpy as np

    from pydata import synthetic

    rng = np.random.default_rng([seed, sum(name.encode())])
    if field.kind == "bytes":
        return [rng.bytes(int(rng.integers(0, 40))) if i % 5 else b"" for i in range(n)]
    if field.kind == "str":
        return [f"sample {i}: " + "é✓x"[: i % 4] * int(rng.integers(0, 6)) for i in range(n)]
    shape = field.shape
    if shape is None:  # varying shape and rank, some empty
        shapes = [tuple(int(d) for d in rng.integers(0, 5, size=i % 3 + 1)) for i in range(n)]
    else:
        shapes = [shape] * n
    if field.dtype == "uint8" and shape is not None and len(shape) == 3 and shape[1] == shape[2]:
        images, _ = synthetic.class_images(n, size=shape[1], channels=shape[0], seed=seed)
        return list(images)
    if field.dtype in ("float16", "float32") and shape is not None and len(shape) == 3 and shape[1] == shape[2]:
        return list(synthetic.smooth_latents(n, shape[0], shape[1], dtype=field.dtype, seed=seed))
    values = []
    for s in shapes:
        if field.dtype == "bfloat16":
            values.append(_bfloat16_bits(rng.standard_normal(s)))
        elif field.dtype == "bool":
            values.append(rng.integers(0, 2, size=s).astype(bool))
        elif np.dtype(field.dtype).kind in "iu":
            info = np.iinfo(field.dtype)
            values.append(rng.integers(max(info.min, -1000), min(info.max, 1000), size=s, dtype=field.dtype,
                                       endpoint=True))
        else:
            values.append((rng.standard_normal(s) * 3).astype(field.dtype))
    return values


def _decoded(field: Any, value: Any) -> Any:
    """What a reader returns for a written value: lossy codecs give their decoded approximation."""
    import numpy as np

    import pydata

    if field.kind != "tensor" or field.codec in ("raw", "lz4", "shuffle+lz4"):
        return value
    dtype = "bfloat16" if field.dtype == "bfloat16" else None
    return pydata.decode(pydata.encode(np.ascontiguousarray(value), field.codec, dtype=dtype))


class SyntheticDataset:
    """A dataset written by the ``make_dataset`` fixture, with the values it holds.

    Attributes:
        path: The dataset directory.
        schema: Field name -> pydata.Field.
        samples: Every sample as written (dicts of numpy arrays, bytes, str).
        expected: Every sample as a reader must return it (lossy codecs already applied;
            bfloat16 as uint16 bits).
    """

    def __init__(self, path: Any, schema: dict[str, Any], samples: list[dict[str, Any]],
                 expected: list[dict[str, Any]]) -> None:
        self.path = path
        self.schema = schema
        self.samples = samples
        self.expected = expected

    def __len__(self) -> int:
        return len(self.samples)

    def batch(self, indices: Any, fields: Any = None) -> dict[str, Any]:
        """The reference batch: stacked arrays for fixed-shape tensors, lists otherwise."""
        import numpy as np

        out: dict[str, Any] = {}
        for name in fields if fields is not None else self.schema:
            field = self.schema[name]
            rows = [self.expected[int(i)][name] for i in indices]
            if field.kind == "tensor" and field.shape is not None:
                out[name] = np.array(rows, dtype=field.storage_dtype).reshape(len(rows), *field.shape)
            else:
                out[name] = rows
        return out

    def reader(self, io: str = "mmap", fields: Any = None) -> Any:
        """A pydata.format.BatchReader over the dataset's shards."""
        from pydata.format import BatchReader, ShardReader, read_index

        index = read_index(self.path)
        shards = [ShardReader(self.path / s.file, s, index.schema, io=io) for s in index.shards]
        return BatchReader(shards, index.schema, fields)

    def shard_paths(self) -> list[Any]:
        """The shard files, in index order."""
        from pydata.format import read_index

        return [self.path / s.file for s in read_index(self.path).shards]


def default_schema() -> dict[str, Any]:
    """One field of every kind and layout."""
    from pydata import Field

    return {
        "image": Field("uint8", (3, 8, 8)),
        "label": Field("int64", ()),
        "latent": Field("float16", (4, 4, 4), codec="int8+lz4"),
        "packed": Field("float32", (2, 5), codec="shuffle+lz4"),
        "var": Field("float32", None, codec="lz4"),
        "raw_var": Field("int16", None),
        "bf16": Field("bfloat16", (6,)),
        "blob": Field("bytes"),
        "text": Field("str"),
    }


@pytest.fixture
def cli_fails(capsys: pytest.CaptureFixture[str]) -> Callable[..., str]:
    """Runs the ``pydata`` CLI on ``argv``, expects status 1 and a single error line that
    contains every one of ``needles``; returns that line."""
    from pydata.cli import main

    def run(argv: list[str], *needles: str) -> str:
        assert main(argv) == 1
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("pydata: error: ")
        for needle in needles:
            assert needle in lines[0], lines[0]
        return lines[0]

    return run


@pytest.fixture
def make_dataset(tmp_path: Any) -> Callable[..., SyntheticDataset]:
    """A factory of small datasets under ``tmp_path``:
    ``make_dataset(n, fields=schema, shard_bytes=..., name=..., seed=..., batched=False, **writer_kwargs)``.

    ``fields`` defaults to one field of every kind (bytes, str, scalar, fixed raw, compressed
    fixed-shape, variable-shape, bfloat16); ``batched=True`` writes with ``write_batch``.
    """
    import numpy as np

    from pydata import ShardWriter

    def make(n: int = 24, fields: dict[str, Any] | None = None, *, shard_bytes: int = 2048,
             name: str = "ds", seed: int = 0, batched: bool = False, **writer_kwargs: Any) -> SyntheticDataset:
        schema = dict(fields) if fields is not None else default_schema()
        columns = {k: _column(k, f, n, seed) for k, f in schema.items()}
        samples = [{k: columns[k][i] for k in schema} for i in range(n)]
        expected = [{k: _decoded(schema[k], v) for k, v in s.items()} for s in samples]
        path = tmp_path / name
        writer_kwargs.setdefault("progress", False)
        with ShardWriter(path, schema, shard_bytes=shard_bytes, **writer_kwargs) as writer:
            if batched:
                writer.write_batch({k: np.stack(v) if schema[k].layout == "fixed" else v
                                    for k, v in columns.items()})
            else:
                for sample in samples:
                    writer.write(sample)
        return SyntheticDataset(path, schema, samples, expected)

    return make


# -- S3: a local moto server, buckets, storage options, a fault-injecting proxy --------------------
#
# Every S3 test talks HTTP to moto's server on 127.0.0.1 (never mocks fsspec/s3fs). The server is
# in-process (moto.server.ThreadedMotoServer), so its state (buckets, IAM, auth mode) is global to
# the test process; each test gets a fresh bucket instead of a fresh server.

_S3_CREDENTIALS = {"key": "testing", "secret": "testing"}
_S3_REGION = "us-east-1"

# Anything on the machine that could send boto/aiohttp traffic elsewhere (proxies, profiles,
# endpoint overrides, instance metadata lookups) is removed or neutralized for the session.
_S3_UNSET_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_IAM", "AWS_REGION",
                 "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CA_BUNDLE")


class S3Server:
    """The running moto server, as the ``s3_server`` fixture yields it.

    Attributes:
        endpoint_url: ``http://127.0.0.1:PORT``.
        host: Always ``127.0.0.1``.
        port: The port the OS picked.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.endpoint_url = f"http://{host}:{port}"
        self._clients: dict[str, Any] = {}

    def boto3_client(self, service: str = "s3") -> Any:
        """A boto3 client for this server with the dummy credentials, shared for the session
        (botocore clients are thread-safe; creating one costs ~0.1 s of model loading)."""
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.session.Session().client(
                service, endpoint_url=self.endpoint_url, region_name=_S3_REGION,
                aws_access_key_id=_S3_CREDENTIALS["key"],
                aws_secret_access_key=_S3_CREDENTIALS["secret"])
        return self._clients[service]

    def close(self) -> None:
        """Closes the shared boto3 clients."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def set_auth(self, enabled: bool) -> None:
        """Turns moto's credential checks on (IAM keys, SigV4 signatures, policies) or off.

        moto accepts any credentials by default. Its ``INITIAL_NO_AUTH_ACTION_COUNT`` setting
        (an environment variable read when moto is imported) turns checking on after that many
        requests; ``POST /moto-api/reset-auth`` changes it at run time, which works for the
        in-process ThreadedMotoServer as for ``moto_server``. With checking on, only access keys
        created through moto's IAM are valid. Process-global: restore it (``set_auth(False)``).
        """
        import http.client

        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request("POST", "/moto-api/reset-auth", body=b"0" if enabled else b"inf")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status == 200, body

    def __repr__(self) -> str:
        return f"S3Server({self.endpoint_url})"


def _s3_storage_options(endpoint_url: str) -> dict[str, Any]:
    """s3fs storage options for a local endpoint (s3fs also takes ``endpoint_url`` top-level)."""
    return {**_S3_CREDENTIALS,
            "client_kwargs": {"endpoint_url": endpoint_url, "region_name": _S3_REGION}}


def _without_app_server_header(app: Callable[..., Any]) -> Callable[..., Any]:
    """WSGI middleware that drops the application's ``Server`` header (the HTTP server adds one)."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [(k, v) for k, v in headers if k.lower() != "server"],
                                  exc_info)

        return app(environ, start)

    return wrapped


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 (free port) for the whole session, with dummy credentials.

    Sets AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY=testing and AWS_DEFAULT_REGION=us-east-1, points
    AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE at missing files, removes proxy and endpoint
    variables and sets NO_PROXY=127.0.0.1,localhost; all restored at the end of the session.
    """
    missing = tmp_path_factory.mktemp("aws") / "missing"
    with pytest.MonkeyPatch.context() as mp:
        for name in _S3_UNSET_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", _S3_CREDENTIALS["key"])
        mp.setenv("AWS_SECRET_ACCESS_KEY", _S3_CREDENTIALS["secret"])
        mp.setenv("AWS_DEFAULT_REGION", _S3_REGION)
        mp.setenv("AWS_CONFIG_FILE", str(missing / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing / "credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")

        from moto.server import ThreadedMotoServer

        # port=0: werkzeug binds a free port, get_host_and_port() reports it.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        # moto 5.2 answers many requests with its own "server: amazon.com" on top of werkzeug's
        # "Server": aiohttp's strict parser (python -X dev / PYTHONDEVMODE) rejects that as a
        # duplicate singleton header. Drop moto's before any client knows the port. Private
        # attribute: if moto renames it, the suite still runs, only not under -X dev.
        wsgi = getattr(server, "_server", None)
        if wsgi is not None and hasattr(wsgi, "app"):
            wsgi.app = _without_app_server_header(wsgi.app)
        try:
            host, port = server.get_host_and_port()
            assert host == "127.0.0.1", host
            s3 = S3Server(host, port)
            try:
                yield s3
            finally:
                s3.close()
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A new, empty, uniquely named bucket on ``s3_server``; emptied and deleted afterwards."""
    import uuid

    name = f"test-{uuid.uuid4().hex[:20]}"
    client = s3_server.boto3_client()
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys})
    client.delete_bucket(Bucket=name)


def _clear_s3fs_instances() -> None:
    """Drops s3fs's cached filesystem instances; their finalizers close the aiohttp sessions."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    gc.collect()


@pytest.fixture
def s3_options(s3_server: S3Server) -> Iterator[dict[str, Any]]:
    """fsspec ``storage_options`` for s3fs against ``s3_server``: credentials, endpoint, region.

    ``s3fs.S3FileSystem(**s3_options)`` and ``fsspec.open("s3://...", **s3_options)`` both take it.
    s3fs's instance cache is cleared at teardown, so no filesystem (or session) outlives the test.
    """
    yield _s3_storage_options(s3_server.endpoint_url)
    _clear_s3fs_instances()


@pytest.fixture
def upload_dataset(s3_options: dict[str, Any]) -> Callable[..., str]:
    """``upload_dataset(local_dir, bucket, prefix) -> "s3://bucket/prefix"``: puts every file of a
    dataset directory (index.json and shards, as ShardWriter wrote them) under the prefix."""
    from pathlib import Path

    import s3fs

    def upload(local_dir: Any, bucket: str, prefix: str = "ds") -> str:
        root = Path(local_dir)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        assert files, f"nothing to upload in {root}"
        base = f"{bucket}/{prefix.strip('/')}" if prefix.strip("/") else bucket
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)
        fs.put([str(p) for p in files], [f"{base}/{p.relative_to(root).as_posix()}" for p in files])
        return f"s3://{base}"

    return upload


def _load_fault_proxy_module() -> Any:
    """tests/integration/fault_proxy.py, imported by path (tests/ is not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "pydata_tests_fault_proxy"
    if name not in sys.modules:
        path = Path(__file__).parent / "integration" / "fault_proxy.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def fault_proxy(s3_server: S3Server) -> Iterator[Any]:
    """A started ``FaultProxy`` (tests/integration/fault_proxy.py) in front of ``s3_server``,
    faults off, seed 0; stopped (threads joined) at teardown.

    Knobs: ``set_faults(fail_503=, reset=, truncate=, only_get_objects=, seed=)``,
    ``inject_next(kind, count)``, ``clear()``; read ``counts``, ``log``, ``errors``,
    ``endpoint_url``.
    """
    module = _load_fault_proxy_module()
    proxy = module.FaultProxy(s3_server.endpoint_url, seed=0)
    proxy.start()
    try:
        yield proxy
    finally:
        _clear_s3fs_instances()  # sessions pointing at the proxy go before it does
        proxy.stop()


@pytest.fixture
def proxy_s3_options(fault_proxy: Any) -> dict[str, Any]:
    """Like ``s3_options``, with the endpoint of ``fault_proxy``."""
    return _s3_storage_options(fault_proxy.endpoint_url)


@pytest.fixture
def loopback_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Blocks any TCP/UDP connect to a non-loopback address during the test (all threads,
    including fsspec's event loop) and fails the test at teardown if one was tried, even if a
    retry layer swallowed the error; yields the list of addresses connected to."""
    import ipaddress
    import socket

    seen: list[Any] = []
    violations: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        seen.append(address)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0]).split("%")[0]
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:  # a host name: resolving it may already leave the machine
                loopback = host == "localhost"
            if not loopback:
                violations.append(address)
                msg = f"test tried to connect to {address!r}; only loopback is allowed"
                raise AssertionError(msg)

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield seen
    assert not violations, f"connections outside loopback were attempted: {violations!r}"
