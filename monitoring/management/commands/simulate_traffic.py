"""`manage.py simulate_traffic URL`: synthetic traffic for the demo's live model, so the
prediction log, the live-quality chart, drift and a live-accuracy rule have something real
to show on a fresh `make run` (scripts/run.sh starts it in the background).

It sends iris rows to every live deployment of `--model` (POST /predict), and after
`--drift-after` seconds shifts the petal measurements the way a changed population would,
keeping the true labels: the model's live accuracy falls. For a share of the predictions
the server logged (`"logged": true`), it sends the true label through the portal's API
(POST /api/v1/deployments/{id}/feedback/) once the worker has had time to collect them.

Harmless when nothing is live (it waits and looks again), and it stops with the portal:
on SIGTERM/SIGINT, or when the process `--stop-with` names has gone. Its API token is
revoked on the way out."""

import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from deployments.models import Deployment
from mlops_portal.core import tokens

USER = "alice"  # the demo's data scientist (load_demo_data)
DRIFT = (0.0, -0.4, 2.2, 0.9)  # added to each iris row after the drift: longer, wider petals
LOOK_AGAIN_SECONDS = 5.0


@dataclass
class Pending:
    """Labels waiting for the collector to bring their predictions into the portal."""

    by_deployment: dict = field(default_factory=dict)  # id -> [(sent_at, pid, label)]

    def add(self, deployment_id: int, prediction_id: str, label) -> None:
        self.by_deployment.setdefault(deployment_id, []).append(
            (time.monotonic(), prediction_id, label)
        )

    def due(self, older_than: float) -> dict[int, list]:
        """Take out the labels sent more than `older_than` seconds ago, per deployment."""
        now, due = time.monotonic(), {}
        for deployment_id, items in self.by_deployment.items():
            due[deployment_id] = [i for i in items if now - i[0] >= older_than]
            self.by_deployment[deployment_id] = [i for i in items if now - i[0] < older_than]
        return {pk: items for pk, items in due.items() if items}


class Command(BaseCommand):
    help = "Send synthetic /predict traffic (drifting after a while) and feedback labels."

    def add_arguments(self, parser):
        parser.add_argument("url", help="The portal, e.g. http://127.0.0.1:8000")
        parser.add_argument("--model", default="iris-classifier")
        parser.add_argument("--rate", type=float, default=4.0, help="Requests per second.")
        parser.add_argument("--drift-after", type=float, default=180.0,
                            help="Seconds of normal traffic before the inputs shift.")  # fmt: skip
        parser.add_argument("--feedback-share", type=float, default=0.5,
                            help="Share of logged predictions that get their label.")  # fmt: skip
        parser.add_argument("--feedback-delay", type=float,
                            default=2.0 * settings.PREDICTION_COLLECT_INTERVAL_SECONDS + 5,
                            help="Seconds before a label is sent (collector lag).")  # fmt: skip
        parser.add_argument("--feedback-every", type=float, default=10.0,
                            help="Seconds between feedback requests.")  # fmt: skip
        parser.add_argument("--duration", type=float, default=0.0, help="Stop after; 0: never.")
        parser.add_argument("--stop-with", type=int, help="Stop when this process has gone.")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, url, **options):
        user = get_user_model().objects.filter(username=USER).first()
        if user is None:
            raise CommandError(f"No user {USER!r}: run `manage.py load_demo_data` first.")
        stop_on_signals()
        token, secret = tokens.create_token(user, f"traffic simulator {int(time.time())}")
        try:
            Simulator(self, url.rstrip("/"), secret, options).run()
        except KeyboardInterrupt:
            pass
        finally:
            tokens.revoke_token(user, token)
            self.stdout.write("simulate_traffic: stopped.")


def stop_on_signals() -> None:
    """SIGTERM (honcho, or the portal's stop) ends the loop like Ctrl-C, so the token is
    revoked. A background job of a script starts with SIGINT ignored: take it back."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return  # run from a thread (tests): signals are the main thread's
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


class Simulator:
    def __init__(self, command, url, secret, options):
        from sklearn.datasets import load_iris

        self.command, self.url, self.options = command, url, options
        features, labels = load_iris(return_X_y=True)
        self.rows = [
            (row.tolist(), int(label)) for row, label in zip(features, labels, strict=True)
        ]
        self.random = random.Random(options["seed"])
        self.pending = Pending()
        self.client = httpx.Client(timeout=5, headers={"Authorization": f"Token {secret}"})
        self.servers = httpx.Client(timeout=5)  # keep-alive to the model servers
        self.sent = self.labelled = self.refused = 0

    def run(self) -> None:
        started = time.monotonic()
        drifting = False
        interval = 1.0 / max(self.options["rate"], 0.01)
        next_feedback = time.monotonic() + self.options["feedback_every"]
        said_waiting = False
        endpoints, looked_at = [], 0.0
        while self.keep_going(started):
            if time.monotonic() - looked_at >= LOOK_AGAIN_SECONDS:  # a new deployment, or none
                endpoints, looked_at = self.live_endpoints(), time.monotonic()
            if not endpoints:
                if not said_waiting:
                    self.say(f"nothing of {self.options['model']} is live yet; waiting.")
                    said_waiting = True
                time.sleep(LOOK_AGAIN_SECONDS)
                looked_at = 0.0
                continue
            said_waiting = False
            if not drifting and time.monotonic() - started >= self.options["drift_after"]:
                drifting = True
                self.say("the inputs drift now (longer, wider petals); accuracy will fall.")
            for deployment_id, endpoint in endpoints:
                self.predict(deployment_id, endpoint, drifting)
            if time.monotonic() >= next_feedback:
                self.send_feedback()
                next_feedback = time.monotonic() + self.options["feedback_every"]
            time.sleep(interval)

    def keep_going(self, started: float) -> bool:
        duration, parent = self.options["duration"], self.options["stop_with"]
        if duration and time.monotonic() - started >= duration:
            return False
        if parent:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass  # alive, someone else's
        return True

    def live_endpoints(self) -> list[tuple[int, str]]:
        live = Deployment.objects.live().filter(version__model__name=self.options["model"])
        return list(live.exclude(endpoint="").order_by("pk").values_list("pk", "endpoint"))

    def predict(self, deployment_id: int, endpoint: str, drifting: bool) -> None:
        row, label = self.random.choice(self.rows)
        if drifting:
            row = [round(value + shift, 2) for value, shift in zip(row, DRIFT, strict=True)]
        try:
            answer = self.servers.post(f"{endpoint}/predict", json={"instances": [row]})
            body = answer.json() if answer.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return  # a server between deployments: the next round finds the new one
        self.sent += 1
        if body.get("logged") and self.random.random() < self.options["feedback_share"]:
            self.pending.add(deployment_id, body["prediction_id"], label)

    def send_feedback(self) -> None:
        for deployment_id, items in self.pending.due(self.options["feedback_delay"]).items():
            labels = [{"prediction_id": pid, "label": label} for _, pid, label in items]
            try:
                answer = self.client.post(
                    f"{self.url}/api/v1/deployments/{deployment_id}/feedback/",
                    json={"labels": labels},
                )
            except httpx.HTTPError as exc:
                self.say(f"feedback not sent ({exc}); the portal may be restarting.")
                continue
            if answer.status_code == 200:
                self.labelled += answer.json()["recorded"]
            else:  # e.g. the collector is behind: these labels are given up, not retried
                self.refused += len(labels)
                self.say(f"feedback refused ({answer.status_code}): {answer.text[:200]}")

    def say(self, message: str) -> None:
        self.command.stdout.write(
            f"simulate_traffic: {message} (sent {self.sent}, labelled {self.labelled})"
        )
        sys.stdout.flush()
