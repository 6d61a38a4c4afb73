"""Redis beyond one server: a Sentinel address for every process, a primary failover, and
`replicas_ack` (the accept and the workers' own writes wait until replicas hold them),
against real redis-server processes (tests/redis_nodes.py), never a mock."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import httpx
import pytest
import redis
import redis.asyncio
from click.testing import CliRunner
from prometheus_client import REGISTRY

from callhook.cli import main
from callhook.config import Config, RedisConfig, parse_config, redacted
from callhook.dead_letters import DeadLetters
from callhook.errors import ConfigError
from callhook.events import Delivery
from callhook.queues import (
    DELIVER_QUEUE,
    ENRICH_QUEUE,
    dedupe_key,
    dlq_entries_key,
    dlq_index_key,
    messages_key,
    queue_key,
    retry_queue,
)
from callhook.redaction import redact_url
from callhook.redis_connect import SentinelAddress, async_client, parse_sentinel_url, sync_client
from callhook.replication import Replicas
from callhook.vendors import VENDORS
from callhook.vendors.kit import Faults
from service.app import warn_about_redis
from tests.redis_nodes import Topology, make_tls, poll, redis_topology
from tests.servers import ServerThread
from tests.service.conftest import ingress_config, serve_with
from tests.workers.harness import running_pipeline
from workers.broker import CallhookBroker
from workers.retrying import retry_later

NAMESPACE = "topology"
SOURCE = "openphone"
PASSWORD = "data-n0de/secret"  # a '/' a careless parser would take for the path
SENTINEL_PASSWORD = "sentinel-secret"


@pytest.fixture
def sentinel_topology(tmp_path: Path) -> Iterator[Topology]:
    with redis_topology(tmp_path / "redis", replicas=1, sentinels=1) as topology:
        yield topology


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[Topology]:
    with redis_topology(tmp_path / "redis", replicas=1) as topology:
        yield topology


# --- the config ---------------------------------------------------------------------------


def redis_section(url: str, **more: object) -> Config:
    return parse_config({"redis": {"url": url, **more}}, {}, origin="tests")


def test_sentinel_urls_name_sentinels_service_database_and_credentials() -> None:
    url = "redis+sentinel://app:p%40ss@s1.internal:26380,s2.internal,[::1]:5000/main-redis/3"
    config = redis_section(url, sentinel_password="sentinel-secret")
    assert config.redis.url == url
    assert parse_sentinel_url(url) == SentinelAddress(
        sentinels=(("s1.internal", 26380), ("s2.internal", 26379), ("::1", 5000)),
        service_name="main-redis",
        db=3,
        username="app",
        password="p@ss",
    )
    assert parse_sentinel_url("redis+sentinel://s1/main").db == 0
    assert parse_sentinel_url("redis+sentinel://s1/main").tls is None


def test_rediss_sentinel_urls_carry_the_tls_settings_for_sentinels_and_nodes() -> None:
    url = (
        "rediss+sentinel://:p%3Fss@s1:26380,s2/main/1?ssl_ca_certs=/etc/ca.pem"
        "&ssl_cert_reqs=required&ssl_check_hostname=false"
    )
    config = redis_section(url, sentinel_password="sentinel-secret")
    address = parse_sentinel_url(config.redis.url)
    assert address.sentinels == (("s1", 26380), ("s2", 26379))
    assert (address.service_name, address.db, address.password) == ("main", 1, "p?ss")
    assert address.tls == {
        "ssl": True,
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": False,
    }
    assert parse_sentinel_url("rediss+sentinel://s1/main").tls == {"ssl": True}
    assert redis_section("redis://127.0.0.1:6379/0").redis.replicas_ack == 0


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://:hunter2@/main", "no sentinel in the redis+sentinel:// URL"),
        ("redis+sentinel://:hunter2@s1:26379", "no service name"),
        ("redis+sentinel://:hunter2@s1:26379/", "no service name"),
        ("redis+sentinel://:hunter2@s1:263790/main", "bad sentinel address 's1:263790'"),
        ("redis+sentinel://:hunter2@s1:port/main", "the port must be 1-65535"),
        ("redis+sentinel://:hunter2@s1,:26379/main", "bad sentinel address ':26379': no host"),
        ("redis+sentinel://:hunter2@s1/main/zero", "the database after the service name"),
        ("redis+sentinel://:hunter2@s1/main?db=1", "takes no query"),
        ("redis+sentinel://:hun/ter2@s1:x/main", "the port must be 1-65535"),
        ("http://:hunter2@s1/main", "must be a redis://, rediss://, unix://, redis+sentinel://"),
        ("rediss+sentinel://:hunter2@s1/main?ssl=false", "unknown setting 'ssl'"),
        ("rediss+sentinel://:hunter2@s1/main?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of"),
        ("rediss+sentinel://:hunter2@s1/main?ssl_check_hostname=1", "must be true or false"),
        ("rediss+sentinel://:hunter2@s1/main?ssl_ca_certs=", "ssl_ca_certs has no value"),
        ("rediss+sentinel://:hunter2@s1/main#x", "takes no fragment"),
    ],
)
def test_a_malformed_sentinel_url_is_one_line_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        redis_section(url)
    message = str(caught.value)
    assert message.startswith("redis.url: ")
    assert problem in message
    assert "hunter2" not in message
    assert "ter2" not in message


def test_config_refuses_what_only_sentinels_or_a_count_can_take() -> None:
    with pytest.raises(ConfigError, match=r"^redis.sentinel_password: .*redis\+sentinel://"):
        redis_section("redis://127.0.0.1:6379/0", sentinel_password="sentinel-secret")
    with pytest.raises(ConfigError, match=r"^redis.replicas_ack: "):
        redis_section("redis://127.0.0.1:6379/0", replicas_ack=-1)


def test_sentinel_passwords_are_never_shown() -> None:
    url = f"redis+sentinel://app:{PASSWORD}@s1:26379,s2:26379/main/0"
    assert redact_url(url) == "redis+sentinel://app:**********@s1:26379,s2:26379/main/0"
    assert redact_url("redis+sentinel://:p?a#ss@s1/main") == "redis+sentinel://**********@s1/main"
    # a '/' in the password of a plain URL too: the user info runs to the last '@'
    assert redact_url(f"redis://:{PASSWORD}@h:6379/0") == "redis://**********@h:6379/0"
    dumped = json.dumps(redacted(redis_section(url, sentinel_password=SENTINEL_PASSWORD)))
    assert PASSWORD not in dumped
    assert "secret" not in dumped
    assert "s1:26379,s2:26379/main/0" in dumped


# --- Sentinel ---------------------------------------------------------------------------------


def sentinel_config(tmp_path: Path, topology: Topology, **redis: object) -> Config:
    if topology.sentinel_password:
        redis.setdefault("sentinel_password", topology.sentinel_password)
    return ingress_config(tmp_path, topology.sentinel_url, NAMESPACE, redis=redis)


def new_delivery(config: Config, vendor_type: str = "call.completed") -> Delivery:
    vendor = VENDORS[config.sources[SOURCE].vendor]
    now = time.time()
    call = vendor.kit.simulated_call(None, now=now)
    return vendor.kit.simulate_delivery(config.sources[SOURCE], vendor_type, call, now=now)


def post(ingress: ServerThread, delivery: Delivery) -> httpx.Response:
    return httpx.post(
        f"{ingress.url}/webhooks/{SOURCE}",
        content=delivery.body,
        headers=dict(delivery.headers),
        timeout=10,
    )


def event_key(config: Config, delivery: Delivery) -> str:
    return VENDORS[config.sources[SOURCE].vendor].parse(delivery).event_key


def enqueued_keys(client: redis.Redis) -> list[str]:
    """The event keys of the enrich messages queued on the server `client` talks to."""
    ids = client.lrange(queue_key(NAMESPACE, ENRICH_QUEUE), 0, -1)
    raws = client.hmget(messages_key(NAMESPACE, ENRICH_QUEUE), ids) if ids else []
    return [json.loads(raw)["kwargs"]["event_key"] for raw in raws if raw is not None]


@pytest.mark.parametrize("tls", [False, True], ids=["redis+sentinel", "rediss+sentinel"])
def test_every_client_on_a_sentinel_url_talks_to_the_primary(tmp_path: Path, tls: bool) -> None:
    with redis_topology(
        tmp_path / "redis",
        replicas=1,
        sentinels=1,
        password=PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
        tls=tls,
    ) as topology:
        config = sentinel_config(tmp_path, topology)
        primary = topology.client(topology.primary)
        with serve_with(config) as ingress:
            delivery = new_delivery(config)
            answer = post(ingress, delivery)
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "accepted"
            assert enqueued_keys(primary) == [event_key(config, delivery)]
            ready = httpx.get(f"{ingress.url}/readyz").json()
            assert ready == {"status": "ok", "redis_primary": topology.primary.address}

        # the workers' broker (blocking client) and the dead-letter CLI (asyncio client)
        broker = CallhookBroker(client=sync_client(config.redis), namespace=NAMESPACE)
        try:
            message: dramatiq.Message[object] = dramatiq.Message(
                queue_name=DELIVER_QUEUE, actor_name=DELIVER_QUEUE, args=(), kwargs={}, options={}
            )
            broker.enqueue(message)
            assert primary.llen(queue_key(NAMESPACE, DELIVER_QUEUE)) == 1
        finally:
            broker.close()
        config_path = tmp_path / "sentinel.toml"
        config_path.write_text(
            f'[redis]\nurl = "{topology.sentinel_url}"\nnamespace = "{NAMESPACE}"\n'
            f'sentinel_password = "{SENTINEL_PASSWORD}"\n'
        )
        listed = CliRunner().invoke(main, ["dlq", "list", "--config", str(config_path)])
        assert listed.exit_code == 0, listed.output
        assert listed.output.strip() == "no dead letters"

        # a wrong sentinel password is refused by the sentinels: no primary is found
        wrong = sentinel_config(tmp_path, topology, sentinel_password="not-the-password")

        async def ping() -> None:
            client = async_client(wrong.redis, socket_timeout=2)
            try:
                await client.ping()
            finally:
                await client.aclose()

        with pytest.raises(redis.exceptions.ConnectionError):
            asyncio.run(ping())


def test_a_rediss_sentinel_url_verifies_the_servers_and_speaks_tls_only(tmp_path: Path) -> None:
    """Servers that speak TLS only: the URL's authority must have signed their
    certificates, and a plain `redis+sentinel://` address finds no primary."""
    with redis_topology(tmp_path / "redis", replicas=0, sentinels=1, tls=True) as topology:
        assert topology.tls is not None
        sentinels = topology.sentinel_url.partition("://")[2].partition("?")[0]

        async def ping(url: str) -> None:
            client = async_client(RedisConfig(url=url), socket_timeout=2)
            try:
                await client.ping()
            finally:
                await client.aclose()

        asyncio.run(ping(topology.sentinel_url))  # the test's own authority: trusted
        other = make_tls(tmp_path / "other")  # an authority that signed nothing here
        for url in (
            f"rediss+sentinel://{sentinels}?ssl_ca_certs={other.ca}",
            f"redis+sentinel://{sentinels}",
        ):
            with pytest.raises(redis.exceptions.ConnectionError):
                asyncio.run(ping(url))


def test_after_the_primary_is_killed_ingress_and_clients_follow_the_new_one(
    tmp_path: Path, sentinel_topology: Topology
) -> None:
    topology = sentinel_topology
    config = sentinel_config(tmp_path, topology, accept_timeout_s=0.5)
    old, replica = topology.primary, topology.replicas[0]
    replica_client = topology.client(replica)
    blocking = sync_client(config.redis, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        with serve_with(config) as ingress:
            first = new_delivery(config)
            assert post(ingress, first).status_code == 200
            assert httpx.get(f"{ingress.url}/readyz").json()["redis_primary"] == old.address
            blocking.set(f"{NAMESPACE}:probe", "before")

            started = time.monotonic()
            old.kill()
            answers: list[int] = []

            def accepted_on_the_new_primary() -> bool:
                delivery = new_delivery(config)
                answer = post(ingress, delivery)
                answers.append(answer.status_code)
                if answer.status_code != 200:
                    assert answer.status_code == 503, answer.text
                    return False
                # the only server alive: a 200 is a write the new primary holds
                key = dedupe_key(NAMESPACE, SOURCE, event_key(config, delivery))
                assert replica_client.exists(key), "a 200 for a write not on the new primary"
                assert event_key(config, delivery) in enqueued_keys(replica_client)
                return True

            poll(accepted_on_the_new_primary, "the ingress accepting again", timeout_s=15)
            took = time.monotonic() - started
            assert topology.wait_for_failover() is replica
            assert replica_client.execute_command("ROLE")[0] == b"master"
            ready = httpx.get(f"{ingress.url}/readyz").json()
            assert ready == {"status": "ok", "redis_primary": replica.address}
            assert took < 15, answers

        def blocking_write() -> bool:
            return bool(blocking.set(f"{NAMESPACE}:probe", "after"))

        poll(blocking_write, "the blocking client writing again", timeout_s=10)
        assert replica_client.get(f"{NAMESPACE}:probe") == b"after"
    finally:
        blocking.close()


# --- replicas_ack ---------------------------------------------------------------------------


def unconfirmed_count(where: str) -> float:
    """`callhook_replication_unconfirmed_total{where}` as this process's /metrics shows it."""
    value = REGISTRY.get_sample_value("callhook_replication_unconfirmed_total", {"where": where})
    return value or 0.0


def test_an_accept_waits_for_a_replica_and_a_503_retry_lands_once(
    tmp_path: Path, replicated: Topology
) -> None:
    config = ingress_config(
        tmp_path,
        replicated.url,
        NAMESPACE,
        redis={"replicas_ack": 1, "accept_timeout_s": 1.0},
    )
    primary = replicated.client(replicated.primary)
    replica_node = replicated.replicas[0]
    replica = replicated.client(replica_node)
    with serve_with(config) as ingress:
        confirmed = new_delivery(config)
        answer = post(ingress, confirmed)
        assert answer.status_code == 200, answer.text
        assert replica.exists(dedupe_key(NAMESPACE, SOURCE, event_key(config, confirmed)))

        replica_node.pause()  # it stops acknowledging
        try:
            before = unconfirmed_count("accept")
            unconfirmed = new_delivery(config)
            started = time.monotonic()
            refused = post(ingress, unconfirmed)
            took = time.monotonic() - started
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "5"
            assert took < config.redis.accept_timeout_s + 0.5, took
            # the write landed on the primary: the vendor's retry will find it
            assert event_key(config, unconfirmed) in enqueued_keys(primary)
            assert unconfirmed_count("accept") == before + 1
            # and a retry while the replica is still away is refused again
            assert post(ingress, unconfirmed).status_code == 503
        finally:
            replica_node.resume()

        def retried() -> httpx.Response | None:  # as the vendor does, until a 200
            answer = post(ingress, unconfirmed)
            return answer if answer.status_code == 200 else None

        assert poll(retried, "a 200 for the retry", timeout_s=10).json()["status"] == "duplicate"
        key = event_key(config, unconfirmed)
        assert enqueued_keys(primary).count(key) == 1
        assert enqueued_keys(replica).count(key) == 1


async def test_serve_warns_when_fewer_replicas_are_connected_than_it_waits_for(
    replicated: Topology, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.asyncio.Redis.from_url(replicated.url)
    try:
        await warn_about_redis(client, replicas_ack=1)
        assert "replicas_ack" not in caplog.text
        await warn_about_redis(client, replicas_ack=2)
        assert "redis.replicas_ack is 2 but the primary has 1 replica(s) connected" in caplog.text
    finally:
        await client.aclose()


async def test_a_dead_letter_is_not_done_until_a_replica_holds_it(
    replicated: Topology, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.asyncio.Redis.from_url(replicated.url)
    primary = replicated.client(replicated.primary)
    replica_node = replicated.replicas[0]
    replicas = Replicas(count=1, wait_ms=200, namespace=NAMESPACE)
    dead_letters = DeadLetters(client, NAMESPACE, replicas=replicas)
    entries = dlq_entries_key(NAMESPACE, DELIVER_QUEUE)
    caplog.set_level(logging.WARNING, logger="callhook.replication")
    before = unconfirmed_count("dead_letter")
    try:
        replica_node.pause()
        adding = asyncio.create_task(
            dead_letters.add(
                queue=DELIVER_QUEUE,
                actor=DELIVER_QUEUE,
                kwargs={"source": SOURCE, "call_id": "C1"},
                reason="HTTP 401",
                attempts=1,
                sink="crm",
            )
        )
        done, _ = await asyncio.wait({adding}, timeout=1.5)
        assert not done, "a dead letter no replica holds counted as written"
        assert primary.hlen(entries) == 1, "written on the primary, waiting for the replica"
        assert "dead_letter not yet replicated (0 of 1 replica(s)" in caplog.text
        assert unconfirmed_count("dead_letter") > before

        # a failover to a replica that never got it: the entry and its marker are gone
        (entry_id,) = primary.hkeys(entries)
        assert isinstance(entry_id, bytes)
        primary.delete(entries, dlq_index_key(NAMESPACE, DELIVER_QUEUE))
        primary.delete(replicas.marker(f"dlq:{entry_id.decode()}"))
        replica_node.resume()
        entry = await asyncio.wait_for(adding, timeout=10)
        replica = replicated.client(replica_node)
        assert replica.hkeys(entries) == [entry.id.encode()], "written again, once"
        assert primary.zcard(dlq_index_key(NAMESPACE, DELIVER_QUEUE)) == 1
        assert primary.keys(f"{NAMESPACE}:replicated:*") == [], "the marker, once confirmed"
    finally:
        replica_node.resume()
        await client.aclose()


async def test_a_retry_is_not_enqueued_until_a_replica_holds_it_and_only_once(
    replicated: Topology, caplog: pytest.LogCaptureFixture
) -> None:
    replicas = Replicas(count=1, wait_ms=200, namespace=NAMESPACE)
    broker = CallhookBroker(
        client=redis.Redis.from_url(replicated.url), namespace=NAMESPACE, replicas=replicas
    )
    primary = replicated.client(replicated.primary)
    replica_node = replicated.replicas[0]
    delay_queue = queue_key(NAMESPACE, f"{retry_queue(DELIVER_QUEUE)}.DQ")
    caplog.set_level(logging.WARNING, logger="callhook.replication")
    before = unconfirmed_count("retry")
    try:
        replica_node.pause()
        kwargs = {"source": SOURCE, "call_id": "C1", "sink": "crm", "attempt": 1}
        retrying = asyncio.create_task(retry_later(broker, DELIVER_QUEUE, kwargs, 30.0))
        done, _ = await asyncio.wait({retrying}, timeout=1.5)
        assert not done, "a retry no replica holds counted as enqueued"
        assert "retry not yet replicated" in caplog.text
        assert unconfirmed_count("retry") > before
        assert primary.llen(delay_queue) == 1
        replica_node.resume()
        await asyncio.wait_for(retrying, timeout=10)
        # confirmed, not enqueued again: one retry on the primary and on the replica
        assert primary.llen(delay_queue) == 1
        assert replicated.client(replica_node).llen(delay_queue) == 1
        assert primary.keys(f"{NAMESPACE}:replicated:*") == [], "the marker, once confirmed"
    finally:
        replica_node.resume()
        broker.close()


def test_a_pipeline_on_sentinel_with_replicas_ack_retries_and_dead_letters(
    tmp_path: Path, sentinel_topology: Topology
) -> None:
    """Ingress, a real Dramatiq worker and the dead-letter CLI on a Sentinel URL with
    `replicas_ack = 1`: an enrich retry and a dead letter go through the waiting writes."""
    topology = sentinel_topology
    replica = topology.client(topology.replicas[0])
    with running_pipeline(
        tmp_path, topology.sentinel_url, NAMESPACE, sections={"redis": {"replicas_ack": 1}}
    ) as pipeline:
        assert pipeline.config.redis.replicas_ack == 1
        pipeline.state("cometchat").faults = Faults(server_errors=1)
        call = pipeline.new_call("cometchat")
        assert pipeline.post("cometchat", "call_ended", call).status_code == 200
        (line,) = pipeline.wait_for(1)
        assert line["record"]["enrichment"] == "api"

        pipeline.state("openphone").faults = Faults(unauthorized=True)
        unauthorized = pipeline.new_call("openphone")
        assert pipeline.post("openphone", "call.completed", unauthorized).status_code == 200
        index = dlq_index_key(NAMESPACE, ENRICH_QUEUE)
        poll(lambda: replica.zcard(index) == 1, "the dead letter on the replica")


# --- the processes die with the tests --------------------------------------------------------


def test_the_servers_die_with_a_test_process_killed_outright(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tests.redis_nodes import redis_topology\n"
        "with redis_topology(Path(sys.argv[1]), replicas=1, sentinels=1) as t:\n"
        "    print(' '.join(str(n.process.pid) for n in [*t.nodes, *t.sentinels]), flush=True)\n"
        "    time.sleep(60)\n"
    )
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "redis")],
        stdout=subprocess.PIPE,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert child.stdout is not None
        pids = [int(pid) for pid in child.stdout.readline().split()]
        assert len(pids) == 3
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        poll(lambda: not any(alive(pid) for pid in pids), "every server gone", timeout_s=10)
    finally:
        child.kill()
        child.wait()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
