"""The probe engine against a real aiohttp server on 127.0.0.1 (in a thread with its own
event loop). Only DNS is played by a stand-in, where a test needs a name to resolve to an
address this machine cannot give it."""

import asyncio
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from monitoring.netpolicy import DEFAULT_ALLOWED, NetPolicy
from monitoring.probing import ProbeSpec, probe_all, probe_all_sync

POLICY = NetPolicy.from_setting(DEFAULT_ALLOWED)


class ProbeTarget:
    """A model-server stand-in: routes for every outcome, a count of hits per URL, and the
    order in which requests started and ended (ended includes cancelled by the client)."""

    def __init__(self):
        self.hits = Counter()
        self.events = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self):
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.serve(), self.loop).result(10)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def serve(self):
        @web.middleware
        async def count(request, handler):
            self.hits[request.path_qs] += 1
            self.events.append(("start", request.path_qs))
            try:
                return await handler(request)
            finally:
                self.events.append(("end", request.path_qs))

        async def ok(request):
            return web.json_response({"status": "ok"})

        async def slow(request):
            await asyncio.sleep(3)
            return web.json_response({"status": "ok"})

        async def sleep100(request):
            await asyncio.sleep(0.1)
            return web.json_response({"status": "ok"})

        async def error(request):
            return web.json_response({"status": "broken"}, status=500)

        def redirect(location):
            async def handler(request):
                raise web.HTTPFound(location)

            return handler

        async def big(request):
            return web.Response(body=b"x" * (4 * 1024 * 1024))

        async def big_chunked(request):
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(64):
                await response.write(b"x" * 65536)
            return response

        app = web.Application(middlewares=[count])
        app.add_routes(
            [
                web.get("/ok", ok),
                web.get("/slow", slow),
                web.get("/sleep100", sleep100),
                web.get("/error", error),
                web.get("/redirect-ok", redirect("/ok")),
                web.get("/redirect-meta", redirect("http://169.254.169.254/latest")),
                web.get("/redirect-loop", redirect("/redirect-loop")),
                web.get("/redirect-outside", redirect("http://8.8.8.8/")),
                web.get("/big", big),
                web.get("/big-chunked", big_chunked),
            ]
        )
        # Handlers of abandoned (timed-out) requests end with the connection, not 3 s later.
        self.runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return self.runner.addresses[0][1]


@pytest.fixture(scope="module")
def target():
    server = ProbeTarget()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def closed_port():
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def probe(url, policy=POLICY, **kwargs):
    [outcome] = probe_all_sync([ProbeSpec(check_id=1, url=url, **kwargs)], policy)
    return outcome


class FakeDNS(AbstractResolver):
    """Plays DNS: answers the given addresses for the given names, fails for the others."""

    def __init__(self, answers):
        self.answers = answers

    async def resolve(self, host, port=0, family=socket.AF_INET):
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.answers[host]
        ]

    async def close(self):
        pass


def probe_with_dns(answers, url, policy):
    specs = [ProbeSpec(check_id=1, url=url, timeout=2.0)]
    [outcome] = run_in_own_loop(probe_all(specs, policy, dns=FakeDNS(answers)))
    return outcome


# --- answers -------------------------------------------------------------------------------


def test_a_fast_ok(target):
    outcome = probe(f"{target.base}/ok")
    assert outcome.ok
    assert outcome.status_code == 200
    assert outcome.latency_ms > 0
    assert outcome.error == ""
    assert outcome.at.tzinfo == UTC
    assert outcome.check_id == 1


def test_head_is_probed_too(target):
    outcome = probe(f"{target.base}/ok?head", method="HEAD")
    assert outcome.ok, outcome.error
    assert target.hits["/ok?head"] == 1


def test_an_unexpected_status(target):
    outcome = probe(f"{target.base}/error")
    assert not outcome.ok
    assert outcome.status_code == 500
    assert outcome.error == "HTTP 500 (expected 200)"
    assert outcome.latency_ms > 0


def test_an_expected_status_other_than_200(target):
    assert probe(f"{target.base}/error", expected_statuses=(500,)).ok
    outcome = probe(f"{target.base}/ok", expected_statuses=(204, 503))
    assert outcome.error == "HTTP 200 (expected 204 or 503)"


def test_a_slow_endpoint_times_out(target):
    started = time.monotonic()
    outcome = probe(f"{target.base}/slow", timeout=0.5)
    # The server answers after 3 s: well before that, the probe has given up.
    assert time.monotonic() - started < 2.5
    assert not outcome.ok
    assert outcome.status_code is None
    assert outcome.error == "timed out after 0.5 s"


def test_slow_endpoints_do_not_delay_the_others(target):
    specs = []
    for i in range(55):
        path = "/slow" if i % 11 == 5 else "/ok"  # 5 slow ones spread among 50 fast ones
        specs.append(ProbeSpec(check_id=i, url=f"{target.base}{path}?batch={i}", timeout=2))
    outcomes = probe_all_sync(specs, POLICY)
    slow = [o for o in outcomes if "slow" in specs[o.check_id].url]
    fast = [o for o in outcomes if "slow" not in specs[o.check_id].url]
    assert len(slow) == 5
    assert len(fast) == 50
    assert all(o.ok for o in fast), [o.error for o in fast if not o.ok]
    assert all(o.error == "timed out after 2 s" for o in slow)
    # Read from the server's side, so a loaded machine cannot make it flaky: the five slow
    # ones waited at the same time (a batch costs one timeout, not five), and every fast one
    # was answered before the first slow one was given up on.
    batch = [(kind, url) for kind, url in target.events if "batch=" in url]
    in_flight = peak = 0
    for kind, url in batch:
        if url.startswith("/slow"):
            in_flight += 1 if kind == "start" else -1
            peak = max(peak, in_flight)
    assert peak == 5
    first_slow_end = batch.index(next(e for e in batch if e[0] == "end" and "/slow" in e[1]))
    answered_before = [url for kind, url in batch[:first_slow_end] if kind == "end"]
    assert len(answered_before) == 50


def test_connection_refused(closed_port):
    outcome = probe(f"http://127.0.0.1:{closed_port}/health", timeout=2.0)
    assert not outcome.ok
    assert outcome.status_code is None
    assert outcome.latency_ms is None
    assert outcome.error == "connection refused"


def test_a_name_that_does_not_resolve():
    outcome = probe("http://no-such-host.invalid/health", timeout=2.0)
    assert not outcome.ok
    assert outcome.error == "cannot resolve no-such-host.invalid"


def test_latency_over_the_threshold(target):
    outcome = probe(f"{target.base}/sleep100", latency_threshold_ms=20)
    assert not outcome.ok
    assert outcome.status_code == 200
    assert outcome.latency_ms >= 100
    assert outcome.error.startswith("latency ")
    assert outcome.error.endswith(" ms over 20 ms")


def test_latency_under_the_threshold(target):
    assert probe(f"{target.base}/ok", latency_threshold_ms=1000).ok


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
def test_a_big_body_is_not_downloaded(target, path):
    outcome = probe(f"{target.base}{path}", timeout=2.0)
    assert outcome.ok, outcome.error
    assert outcome.status_code == 200


# --- redirects -----------------------------------------------------------------------------


def test_a_redirect_is_followed(target):
    outcome = probe(f"{target.base}/redirect-ok")
    assert outcome.ok, outcome.error
    assert outcome.status_code == 200
    assert target.hits["/ok"] >= 1


def test_an_expected_redirect_is_not_followed(target):
    outcome = probe(f"{target.base}/redirect-ok?no-follow", expected_statuses=(302,))
    assert outcome.ok
    assert outcome.status_code == 302


def test_a_redirect_to_the_metadata_service_is_refused(target):
    outcome = probe(f"{target.base}/redirect-meta")
    assert not outcome.ok
    assert outcome.error == (
        "refused by policy: redirect to http://169.254.169.254/latest: 169.254.169.254 is"
        " link-local (cloud metadata); probes never go there."
    )


def test_a_redirect_outside_the_networks_is_refused(target):
    outcome = probe(f"{target.base}/redirect-outside")
    assert "refused by policy" in outcome.error
    assert "8.8.8.8 is outside HEALTHCHECK_ALLOWED_NETWORKS" in outcome.error


def test_a_redirect_loop(target):
    outcome = probe(f"{target.base}/redirect-loop")
    assert not outcome.ok
    assert outcome.error == "too many redirects (more than 3)"
    assert target.hits["/redirect-loop"] == 4  # the first request and three redirects


# --- the policy at probe time -------------------------------------------------------------


def test_an_ip_outside_the_policy_is_never_contacted(target):
    policy = NetPolicy.from_setting(["10.0.0.0/8"])
    outcome = probe(f"{target.base}/ok?outside-ip", policy)
    assert not outcome.ok
    assert outcome.error == "refused by policy: 127.0.0.1 is outside HEALTHCHECK_ALLOWED_NETWORKS."
    assert target.hits["/ok?outside-ip"] == 0


def test_a_name_resolving_outside_the_policy_is_refused_at_connect_time(target):
    policy = NetPolicy.from_setting(["10.0.0.0/8"])
    outcome = probe(f"http://localhost:{target.port}/ok?outside-name", policy)
    assert not outcome.ok
    assert outcome.error.startswith("refused by policy: localhost resolves to ")
    assert outcome.error.endswith(", outside HEALTHCHECK_ALLOWED_NETWORKS.")
    assert target.hits["/ok?outside-name"] == 0


def test_a_name_resolving_inside_the_policy_is_probed(target):
    assert probe(f"http://localhost:{target.port}/ok").ok


def test_a_pattern_allowed_name_may_resolve_to_any_allowed_kind_of_address(target):
    """The chosen semantics: a host name pattern trusts the name, whatever address it
    resolves to (here loopback, which the networks do not list)."""
    policy = NetPolicy.from_setting(["10.0.0.0/8", "localhost"])
    outcome = probe(f"http://localhost:{target.port}/ok?pattern", policy)
    assert outcome.ok, outcome.error
    assert target.hits["/ok?pattern"] == 1


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/health",
        "http://user:secret@127.0.0.1/health",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.1/health",
        "not a url",
    ],
)
def test_urls_the_policy_refuses_give_an_outcome_not_an_exception(url):
    outcome = probe(url)
    assert not outcome.ok
    assert outcome.error.startswith("refused by policy: ")
    assert outcome.status_code is None


CLUSTER = NetPolicy.from_setting(["127.0.0.0/8", "*.svc.cluster.local"])


def test_the_resolver_lets_allowed_answers_through(target):
    answers = {"iris.svc.cluster.local": ["127.0.0.1"]}
    outcome = probe_with_dns(
        answers, f"http://iris.svc.cluster.local:{target.port}/ok?dns", CLUSTER
    )
    assert outcome.ok, outcome.error
    assert target.hits["/ok?dns"] == 1


@pytest.mark.parametrize(
    ("name", "addresses", "reason"),
    [
        # A pattern allows the name, never a link-local address (DNS rebinding to metadata).
        (
            "meta.svc.cluster.local",
            ["169.254.169.254"],
            "meta.svc.cluster.local resolves to 169.254.169.254, which is link-local"
            " (cloud metadata); probes never go there.",
        ),
        # One forbidden address among allowed ones refuses the whole answer.
        (
            "mixed.svc.cluster.local",
            ["127.0.0.1", "169.254.169.254"],
            "mixed.svc.cluster.local resolves to 169.254.169.254, which is link-local",
        ),
        # A name no pattern allows must resolve inside the networks.
        (
            "rebound.example",
            ["93.184.216.34"],
            "rebound.example resolves to 93.184.216.34, outside HEALTHCHECK_ALLOWED_NETWORKS.",
        ),
    ],
)
def test_the_resolver_refuses_forbidden_answers(target, name, addresses, reason):
    outcome = probe_with_dns({name: addresses}, f"http://{name}:{target.port}/ok?{name}", CLUSTER)
    assert not outcome.ok
    assert outcome.error.startswith(f"refused by policy: {reason}")
    assert target.hits[f"/ok?{name}"] == 0


# --- the batch -----------------------------------------------------------------------------


def test_every_spec_gets_one_outcome_in_input_order(target, closed_port):
    urls = [
        f"{target.base}/ok",
        f"{target.base}/error",
        f"http://127.0.0.1:{closed_port}/",
        "http://169.254.169.254/",
        f"{target.base}/redirect-loop",
        f"{target.base}/slow",
        f"{target.base}/ok",
    ]
    check_ids = [70, 3, 55, 12, 9, 41, 70]  # unordered, and one check twice
    specs = [
        ProbeSpec(check_id=check_id, url=url, timeout=0.5)
        for check_id, url in zip(check_ids, urls, strict=True)
    ]
    outcomes = probe_all_sync(specs, POLICY, concurrency=3)
    assert [o.check_id for o in outcomes] == check_ids
    assert [o.ok for o in outcomes] == [True, False, False, False, False, False, True]
    assert "HTTP 500" in outcomes[1].error
    assert outcomes[2].error == "connection refused"
    assert "policy" in outcomes[3].error
    assert "too many redirects" in outcomes[4].error
    assert "timed out" in outcomes[5].error


def test_no_specs():
    assert probe_all_sync([], POLICY) == []


def run_in_own_loop(coroutine):
    """asyncio.run in a thread of its own: the browser tests leave a loop running here."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
