"""The outside world of the end-to-end benchmark and how it is watched. Servers, each run
as a process of its own and reporting what it saw at `GET /_bench/...`:

* `simulators`: the sandbox's vendor API simulators (callhook/sandbox.py) answering after a
  fixed latency; `/_bench/requests` counts the requests each vendor's API got.
* `receiver`: the HTTP sink's receiver; `/_bench/writes` gives the arrival times of the
  records it was sent, by `source/call_id`.
* `s3`: moto's S3 server; `/_bench/writes` gives the completion times of the object puts,
  by key.

    python -m bench.e2e_servers simulators --port 9101 --var-dir DIR --latency-s 0.02
    python -m bench.e2e_servers receiver --port 9102
    python -m bench.e2e_servers s3 --port 9103

And a PostgreSQL database for the database sink, with a trigger noting when each row was
written (`observed_database`, `database_writes`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from callhook.config import RedisConfig
from callhook.redis_connect import async_client
from callhook.sandbox import prepare
from callhook.vendors.kit import Faults

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _json(value: Any) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


def simulators_app(var_dir: Path, port: int, latency_s: float) -> Starlette:
    """Every registered vendor's simulated API (as `callhook up` serves them, calls created
    on first sight), each request answered after `latency_s`."""
    sandbox = prepare(var_dir, ingress_host="127.0.0.1", ingress_port=0, simulator_port=port)
    apis = sandbox.simulator_app()
    for state in sandbox.simulator_states.values():
        state.faults = Faults(latency_s=latency_s)

    async def requests(request: Request) -> Response:
        return _json({name: len(s.requests) for name, s in sandbox.simulator_states.items()})

    return Starlette(routes=[Route("/_bench/requests", requests), Mount("/", app=apis)])


def receiver_app() -> Starlette:
    """Answers 204 to every record POSTed to /hooks and notes when it arrived."""
    writes: defaultdict[str, list[float]] = defaultdict(list)

    async def receive(request: Request) -> Response:
        record = orjson.loads(await request.body())
        writes[f"{record['source']}/{record['call_id']}"].append(time.time())
        return Response(status_code=204)

    async def report(request: Request) -> Response:
        return _json(writes)

    return Starlette(
        routes=[Route("/hooks", receive, methods=["POST"]), Route("/_bench/writes", report)]
    )


def s3_app() -> WSGIApp:
    """moto's S3, noting when each `PUT …/*.json` (a call object) was stored."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    moto = DomainDispatcherApplication(create_backend_app)
    writes: defaultdict[str, list[float]] = defaultdict(list)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path == "/_bench/writes":
            body = orjson.dumps(writes)
            start_response("200 OK", [("content-type", "application/json")])
            return [body]
        answer: Iterable[bytes] = moto(environ, start_response)
        if environ["REQUEST_METHOD"] == "PUT" and path.endswith(".json"):
            writes[path].append(time.time())  # moto has stored the object by now
        return answer

    return app


def serve_s3(port: int) -> None:
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    server = make_server(
        "127.0.0.1", port, s3_app(), threaded=True, request_handler=MotoRequestHandler
    )
    server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e_servers", description=__doc__)
    parser.add_argument("server", choices=["simulators", "receiver", "s3"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--var-dir", type=Path, default=Path("var"))
    parser.add_argument("--latency-s", type=float, default=0.02)
    args = parser.parse_args(argv)
    if args.server == "s3":
        serve_s3(args.port)
        return
    app = (
        simulators_app(args.var_dir, args.port, args.latency_s)
        if args.server == "simulators"
        else receiver_app()
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


# --- PostgreSQL ------------------------------------------------------------------------

#: a trigger notes the time of every row the database sink writes (committed right after)
WRITE_LOG_SQL = """
CREATE TABLE bench_writes (source text, call_id text, at double precision);
CREATE FUNCTION bench_note_write() RETURNS trigger AS $$
BEGIN
  INSERT INTO bench_writes VALUES (NEW.source, NEW.call_id, extract(epoch FROM clock_timestamp()));
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER bench_calls AFTER INSERT OR UPDATE ON calls
  FOR EACH ROW EXECUTE FUNCTION bench_note_write();
CREATE TRIGGER bench_events AFTER INSERT ON call_events
  FOR EACH ROW EXECUTE FUNCTION bench_note_write();
"""


@contextlib.contextmanager
def observed_database(server_dsn: str, redis_url: str, namespace: str) -> Iterator[str | None]:
    """A new database on the PostgreSQL server at `server_dsn`, migrated by the database
    sink itself and with the write log above; its URL, or None (with a note) when the
    database sink is not in the registry. Dropped afterwards."""
    from callhook.sinks import SINKS

    if "database" not in SINKS:
        print("note: no database sink in callhook.sinks.SINKS yet: PostgreSQL is left out")
        yield None
        return
    name = f"callhook_bench_{namespace.rpartition('-')[2]}"
    admin = f"{server_dsn}/postgres"
    asyncio.run(_execute(admin, f'CREATE DATABASE "{name}"'))
    url = f"{server_dsn}/{name}"
    try:
        asyncio.run(_migrate(url, redis_url, namespace))
        asyncio.run(_execute(url, WRITE_LOG_SQL))
        yield url
    finally:
        asyncio.run(_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _execute(dsn: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _migrate(url: str, redis_url: str, namespace: str) -> None:
    """Start (and so migrate) a database sink on `url`, as a worker would."""
    import httpx

    from callhook.sinks import SINKS
    from callhook.sinks.base import SinkResources

    sink_type = SINKS["database"]
    config = sink_type.config_model.model_validate(
        {"name": "warehouse", "type": "database", "url": url}
    )
    client = async_client(RedisConfig(url=redis_url))
    async with httpx.AsyncClient() as http:
        sink = sink_type(config, SinkResources(http, client, namespace))
        try:
            await sink.start()
        finally:
            await sink.close()
            await client.aclose()


def database_writes(url: str) -> dict[tuple[str, str], float]:
    """(source, call_id) → the time of the last row the sink wrote for that call."""

    async def query() -> dict[tuple[str, str], float]:
        import asyncpg

        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch(
                "SELECT source, call_id, max(at) AS at FROM bench_writes GROUP BY 1, 2"
            )
        finally:
            await connection.close()
        return {(row["source"], row["call_id"]): float(row["at"]) for row in rows}

    return asyncio.run(query())


if __name__ == "__main__":
    main()
