"""The traffic split of a canary, shared by the local backend's proxy (canary_proxy.py) and
the Ray backend's router deployment (ray_app.py): which side serves the next request, and
the router's per-side counters. Neither Ray nor aiohttp: tested without a cluster.

The split is smooth and exact, not random: of any 100 consecutive requests, `weight` go to
the canary, spread evenly (request n goes to the canary when floor((n+1)·w/100) >
floor(n·w/100)).

On Ray the router is the application's ingress while a canary runs. It answers two paths
of its own under the route prefix and sends every other request to one side:

    GET /-/canary                {"weight": w, "served": {"stable": n, "canary": m},
                                  "deployments": {"stable": id, "canary": id}}
    GET /-/metrics/stable|canary  that side's predictions in the model server's /metrics
                                  format (metrics.py), which deployments.canary_analysis reads
"""

import time

from deployments.serving import v2
from deployments.serving.metrics import Metrics

STABLE, CANARY = "stable", "canary"
SIDES = (STABLE, CANARY)
SERVED_BY = "X-Served-By"

# The Serve deployments of a Ray application during a canary (the stable version keeps
# the name it has outside a canary, so the backend finds its replicas under one name).
ROUTER_DEPLOYMENT = "CanaryRouter"
CANARY_DEPLOYMENT = "CanaryModelServer"
STATUS_PATH = "/-/canary"
METRICS_PATH = "/-/metrics/"
# The model server's routes; any other path is counted as "other" (as server.py does).
KNOWN_PATHS = ("/health", "/predict", "/metrics")


class Split:
    """Which side serves the next request, for a weight (smooth, exact interleaving)."""

    def __init__(self):
        self.count = 0
        self.served = {STABLE: 0, CANARY: 0}

    def next_side(self, weight: int) -> str:
        n = self.count % 100
        self.count += 1
        side = CANARY if (n + 1) * weight // 100 > n * weight // 100 else STABLE
        self.served[side] += 1
        return side


def weight_from(config) -> int:
    """The canary's share from the router's Serve `user_config` ({"weight": 0-100});
    ValueError for anything else (Serve then reports the reconfigure as failed)."""
    weight = config.get("weight") if isinstance(config, dict) else None
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise ValueError(f'The router\'s user_config must be {{"weight": 0-100}}, not {config!r}.')
    return weight


def path_label(path: str) -> str:
    """The `path` label a model server would count `path` under (metrics.py)."""
    if v2.is_infer(path):
        return "/v2/infer"
    return path if path in KNOWN_PATHS else "other"


class Router:
    """The router's state: the weight, the split and each side's counters. The Serve
    deployment (ray_app.CanaryRouter) forwards the requests; this decides and counts."""

    def __init__(self, identities: dict[str, tuple[str, int, int]]):
        """`identities`: per side, (model name, version number, deployment id)."""
        self.identities = identities
        self.weight = 0
        self.split = Split()
        self.metrics = {side: Metrics(who[0], who[1]) for side, who in identities.items()}

    def reconfigure(self, config) -> None:
        self.weight = weight_from(config)

    def next_side(self) -> str:
        return self.split.next_side(self.weight)

    def observe(self, side: str, path: str, status: int, started: float) -> None:
        """Count one answered request of `side` (started at perf_counter() `started`)."""
        self.metrics[side].observe(path_label(path), status, time.perf_counter() - started)

    def own_answer(self, path: str) -> tuple[int, object] | None:
        """The router's own answer to `path` (status, JSON body or metrics text), or None
        when the request goes to a side."""
        if path == STATUS_PATH:
            deployments = {side: identity[2] for side, identity in self.identities.items()}
            return 200, {"weight": self.weight, "served": dict(self.split.served),
                         "deployments": deployments}  # fmt: skip
        if path.startswith(METRICS_PATH):
            side = path[len(METRICS_PATH) :]
            if side not in self.metrics:
                return 404, {"error": f"No side {side!r}: ask {METRICS_PATH}stable or canary."}
            return 200, self.metrics[side].render()
        return None
