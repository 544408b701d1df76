"""The `mlops` commands. Each one makes its API calls, prints the result on stdout (a table,
or JSON with --json) and exits with one of the codes in `mlops_cli.exits`."""

import json
import os
import time
from pathlib import Path

import click

from mlops_cli import exits
from mlops_cli.api import Api
from mlops_cli.exits import CliError
from mlops_cli.output import emit, progress

MODEL_COLUMNS = ["name", "owner", "team", "latest_version", "description"]
VERSION_COLUMNS = ["model", "version", "status", "status_detail", "metrics", "created_at"]
DEPLOYMENT_COLUMNS = [
    "id", "model", "version", "target", "state", "strategy", "canary_steps", "canary_weight",
    "endpoint", "failure_reason", "requested_by", "approved_by", "created_at", "finished_at",
    "duration_seconds",
]  # fmt: skip
INCIDENT_COLUMNS = ["id", "severity", "state", "title", "target", "opened_at"]
CHECK_COLUMNS = ["id", "name", "state", "target", "last_latency_ms", "last_probe_at", "url"]
LOG_COLUMNS = ["created_at", "message"]

# What waiting for a deployment ends with: its final state → exit code. A deployment seen
# superseded or rolled back had gone live first; rolled back means it did not hold.
DEPLOYMENT_OUTCOMES = {
    "succeeded": exits.OK,
    "superseded": exits.OK,
    "failed": exits.FAILED,
    "rolled_back": exits.FAILED,
    "rejected": exits.REJECTED,
    "cancelled": exits.REJECTED,
}
# An abort by hand has done what was asked once the canary has failed, the stable version
# serving everything; it was too late when the canary had been promoted already.
ABORT_OUTCOMES = {**DEPLOYMENT_OUTCOMES, "failed": exits.OK, "succeeded": exits.FAILED}
VERSION_OUTCOMES = {"ready": exits.OK, "invalid": exits.FAILED}
DEFAULT_TIMEOUT = 900.0


def poll_seconds() -> float:
    return float(os.environ.get("MLOPS_POLL_SECONDS", "1"))


class Cli(click.Group):
    """Turns a CliError raised anywhere below into its message on stderr and its code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CliError as error:
            click.echo(f"mlops: {error}", err=True)
            ctx.exit(error.code)


def portal_options(command):
    """--url, --token (or MLOPS_URL, MLOPS_TOKEN) and --json, on every command."""
    command = click.option(
        "--json", "as_json", is_flag=True, help="Print JSON only on stdout (progress: stderr)."
    )(command)
    command = click.option(
        "--token", envvar="MLOPS_TOKEN", show_envvar=True, help="An API token of the portal."
    )(command)
    return click.option(
        "--url",
        envvar="MLOPS_URL",
        show_envvar=True,
        help="The portal, e.g. https://mlops.internal",
    )(command)


def wait_options(command):
    command = click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="Seconds --wait waits before giving up (exit 4).",
    )(command)
    return click.option("--wait", is_flag=True, help="Wait for the outcome; exit with its code.")(
        command
    )


def connect(url, token) -> Api:
    if not url:
        raise click.UsageError("Give the portal's address: --url or MLOPS_URL.")
    if not token:
        raise click.UsageError("Give an API token: --token or MLOPS_TOKEN.")
    return Api(url, token, timeout=float(os.environ.get("MLOPS_HTTP_TIMEOUT", "60")))


def percentages(ctx, param, value: str | None) -> list[int] | None:
    """`10,50` as [10, 50]; the portal judges the numbers (range, order) and names the field."""
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not whole numbers separated by commas.") from None


def json_option(value: str | None, name: str):
    """A JSON value given inline, or as @file."""
    if value is None:
        return None
    try:
        text = Path(value[1:]).read_text() if value.startswith("@") else value
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"not JSON ({exc})", param_hint=name) from None


@click.group(cls=Cli, epilog=exits.HELP)
@click.version_option("1.0", prog_name="mlops")
def cli():
    """The MLOps Portal from a terminal or a CI pipeline: register model versions, deploy
    them and wait for the outcome, read deployments, incidents and checks."""


# --- models and versions -----------------------------------------------------------------


@cli.group()
def models():
    """Registered models."""


@models.command("create")
@click.argument("name")
@click.option("--description", default="", help="Markdown.")
@click.option("--team", default="", help="A label for filtering and dashboards.")
@click.option("--tag", "tags", multiple=True, help="Repeat for several tags.")
@portal_options
def models_create(name, description, team, tags, url, token, as_json):
    """Create the model NAME (you own it)."""
    api = connect(url, token)
    body = {"name": name, "description": description, "team": team, "tags": list(tags)}
    emit(api.create("models/", json=body), as_json, MODEL_COLUMNS)


@cli.group()
def versions():
    """Model versions."""


@versions.command("register")
@click.argument("model")
@click.option("--artifact", type=click.Path(exists=True, dir_okay=False), help="A joblib file.")
@click.option("--uri", help="Or an http(s) URL of the artifact that the portal's workers fetch.")
@click.option(
    "--sample-input",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A JSON file with rows of numbers the model must predict on.",
)
@click.option("--metrics", help="JSON object of numbers, e.g. '{\"auc\": 0.91}', or @file.")
@click.option("--params", help="JSON object of training parameters, or @file.")
@click.option("--source-url", default="", help="The commit or run that made it.")
@click.option("--description", default="")
@click.option("--tag", "tags", multiple=True)
@wait_options
@portal_options
def versions_register(
    model, artifact, uri, sample_input, metrics, params, source_url, description, tags,
    wait, timeout, url, token, as_json,
):  # fmt: skip
    """Register the next version of MODEL; with --wait, until it is ready (0) or invalid (1)."""
    if bool(artifact) == bool(uri):
        raise click.UsageError("Give exactly one of --artifact FILE or --uri URL.")
    started = time.monotonic()
    fields = {
        "sample_input": json_option(f"@{sample_input}", "--sample-input"),
        "metrics": json_option(metrics, "--metrics"),
        "params": json_option(params, "--params"),
        "source_url": source_url,
        "description": description,
    }
    fields = {name: value for name, value in fields.items() if value not in (None, "")}
    api = connect(url, token)
    path = f"models/{model}/versions/"
    if uri:
        version = api.create(path, json={**fields, "artifact_uri": uri, "tags": list(tags)})
    else:  # multipart: JSON fields as text, tags comma-separated
        data = {name: v if isinstance(v, str) else json.dumps(v) for name, v in fields.items()}
        if tags:
            data["tags"] = ",".join(tags)
        version = api.create(path, data=data, files={"artifact": artifact})
    progress(f"Registered {model} v{version['version']} ({version['status']}).")
    code = exits.OK
    if wait:
        version, code = wait_for_version(api, version, started + timeout, as_json)
    emit(version, as_json, VERSION_COLUMNS)
    raise SystemExit(code)


def wait_for_version(api, version, deadline, as_json):
    path = f"models/{version['model']}/versions/{version['version']}/"
    seen = version["status"]
    while version["status"] not in VERSION_OUTCOMES:
        if not sleep_until_next_poll(deadline):
            timed_out(version, as_json, VERSION_COLUMNS, f"v{version['version']}", seen)
        version = api.get(path)
        if version["status"] != seen:
            seen = version["status"]
            progress(f"{version['model']} v{version['version']}: {seen}")
    if version["status"] == "invalid":
        progress(f"Invalid: {version['status_detail']}")
    return version, VERSION_OUTCOMES[version["status"]]


# --- deployments -------------------------------------------------------------------------


@cli.command()
@click.argument("model")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--target", required=True, help="The target's name, e.g. churn-staging.")
@click.option("--reason", required=True, help="Why: shown to approvers and on the timeline.")
@click.option("--change-ticket", default="", help="A URL of the change ticket.")
@click.option(
    "--strategy",
    help="all_at_once (the default) or canary: a share of the traffic first, step by step.",
)
@click.option(
    "--canary-steps",
    "--steps",
    "canary_steps",
    callback=percentages,
    metavar="PERCENTS",
    help="A canary's increasing traffic percentages below 100, e.g. 10,50.",
)
@click.option(
    "--canary-step-seconds",
    "--step-seconds",
    "canary_step_seconds",
    type=int,
    metavar="SECONDS",
    help="How long each canary step holds before its analysis (1 to 86400).",
)
@wait_options
@portal_options
def deploy(
    model, version, target, reason, change_ticket, strategy, canary_steps, canary_step_seconds,
    wait, timeout, url, token, as_json,
):  # fmt: skip
    """Request a deployment of MODEL VERSION to a target; with --wait, follow its log (and a
    canary's steps) until it succeeds (0), fails (1), is rejected or cancelled (3), or
    --timeout passes (4)."""
    started = time.monotonic()
    body = {"model": model, "version": version, "target": target, "reason": reason}
    if change_ticket:
        body["change_ticket"] = change_ticket
    body.update(strategy_fields(strategy, canary_steps, canary_step_seconds))
    api = connect(url, token)
    deployment = api.create("deployments/", json=body)
    finish_deployment(api, deployment, wait, started + timeout, as_json)


def strategy_fields(strategy, steps, step_seconds) -> dict:
    """The request's strategy fields, as given: the portal validates them, so its 400 names
    the field. Canary options without `--strategy canary` would be ignored: refuse them."""
    if strategy != "canary" and (steps is not None or step_seconds is not None):
        raise click.UsageError("--canary-steps and --canary-step-seconds need --strategy canary.")
    fields = {"strategy": strategy, "canary_steps": steps, "canary_step_seconds": step_seconds}
    return {name: value for name, value in fields.items() if value is not None}


@cli.command()
@click.argument("deployment_id", metavar="ID", type=int)
@click.option("--reason", required=True, help="Why it is rolled back.")
@wait_options
@portal_options
def rollback(deployment_id, reason, wait, timeout, url, token, as_json):
    """Roll back the live deployment ID: a new deployment of the previous good version."""
    started = time.monotonic()
    api = connect(url, token)
    deployment = api.create(f"deployments/{deployment_id}/rollback/", json={"reason": reason})
    finish_deployment(api, deployment, wait, started + timeout, as_json)


def finish_deployment(api, deployment, wait, deadline, as_json):
    progress(
        f"Deployment #{deployment['id']}: {deployment['model']} v{deployment['version']} to "
        f"{deployment['target']}, {deployment['state']}."
    )
    code = exits.OK
    if wait:
        deployment, code = follow_deployment(api, deployment, deadline, as_json, progress_log)
    emit(deployment, as_json, DEPLOYMENT_COLUMNS)
    raise SystemExit(code)


def progress_log(line):
    progress(f"  {line['created_at']}  {line['message']}")


def follow_deployment(
    api, deployment, deadline, as_json, on_line, after=0, outcomes=DEPLOYMENT_OUTCOMES
):
    """Poll the deployment and its log (each new line to `on_line`) until a final state;
    return it with its exit code from `outcomes`. Past `deadline`, exit 4."""
    path = f"deployments/{deployment['id']}/"
    seen = None
    while True:
        for line in api.get(f"{path}logs/", after=after):
            on_line(line)
            after = line["id"]
        if phase(deployment) != seen:
            seen = phase(deployment)
            progress(f"Deployment #{deployment['id']}: {seen}")
        if deployment["state"] in outcomes:
            if deployment.get("failure_reason"):
                progress(f"Failed: {deployment['failure_reason']}")
            return deployment, outcomes[deployment["state"]]
        if not sleep_until_next_poll(deadline):
            timed_out(
                deployment, as_json, DEPLOYMENT_COLUMNS, f"deployment #{deployment['id']}", seen
            )
        deployment = api.get(path)


def phase(deployment) -> str:
    """Its state as a person follows it: a running canary is at one of its steps (the
    portal keeps `running` for all of them, with the share it takes in `canary_weight`)."""
    state, weight = deployment["state"], deployment.get("canary_weight")
    if state == "requested":
        return "requested (waiting for an MLOps engineer's approval)"
    if state == "running" and weight is not None:
        steps = deployment["canary_steps"]
        step = f"step {steps.index(weight) + 1} of {len(steps)}, " if weight in steps else ""
        return f"running as a canary: {step}{weight} % of the traffic"
    return state


def sleep_until_next_poll(deadline) -> bool:
    """Sleep one poll interval, or until `deadline`; False once the deadline has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    time.sleep(min(poll_seconds(), left))
    return True


def timed_out(current, as_json, columns, what, state):
    emit(current, as_json, columns)
    raise CliError(f"Timed out: {what} is still {state}.", exits.TIMED_OUT)


@cli.group()
def deployments():
    """Deployments: show one, read its log, promote or abort a canary."""


@deployments.command("show")
@click.argument("deployment_id", metavar="ID", type=int)
@portal_options
def deployments_show(deployment_id, url, token, as_json):
    """Show deployment ID: state, endpoint, failure reason, who and when."""
    emit(connect(url, token).get(f"deployments/{deployment_id}/"), as_json, DEPLOYMENT_COLUMNS)


@deployments.command("logs")
@click.argument("deployment_id", metavar="ID", type=int)
@click.option("--follow", is_flag=True, help="Keep printing new lines until the deployment ends.")
@portal_options
def deployments_logs(deployment_id, follow, url, token, as_json):
    """Print the job log of deployment ID. With --follow, new lines as they come (JSON
    Lines with --json) until it ends, exiting with its outcome's code."""
    api = connect(url, token)
    if not follow:
        emit(api.get(f"deployments/{deployment_id}/logs/"), as_json, LOG_COLUMNS)
        return

    def print_line(line):
        if as_json:
            click.echo(json.dumps(line, sort_keys=True))
        else:
            click.echo(f"{line['created_at']}  {line['message']}")

    deployment = api.get(f"deployments/{deployment_id}/")
    _, code = follow_deployment(api, deployment, float("inf"), as_json, print_line)
    raise SystemExit(code)


@deployments.command("promote")
@click.argument("deployment_id", metavar="ID", type=int)
@click.option("--comment", default="", help="Why: recorded on the timeline.")
@wait_options
@portal_options
def deployments_promote(deployment_id, comment, wait, timeout, url, token, as_json):
    """Promote the running canary ID now, skipping its remaining steps (MLOps engineers).
    With --wait, until it serves all the traffic (0) or its promotion fails (1)."""
    started = time.monotonic()
    api = connect(url, token)
    deployment = api.act(f"deployments/{deployment_id}/promote/", json={"comment": comment})
    progress(f"Promoting the canary #{deployment_id}.")
    finish_decision(api, deployment, wait, started + timeout, as_json, DEPLOYMENT_OUTCOMES)


@deployments.command("abort")
@click.argument("deployment_id", metavar="ID", type=int)
@click.option("--reason", default="", help="Why: recorded on the timeline and as the failure.")
@wait_options
@portal_options
def deployments_abort(deployment_id, reason, wait, timeout, url, token, as_json):
    """Abort the running canary ID: the live version takes all the traffic back (MLOps
    engineers). With --wait, until the canary has failed and stopped (0)."""
    started = time.monotonic()
    api = connect(url, token)
    deployment = api.act(f"deployments/{deployment_id}/abort/", json={"reason": reason})
    progress(f"Aborting the canary #{deployment_id}.")
    finish_decision(api, deployment, wait, started + timeout, as_json, ABORT_OUTCOMES)


def finish_decision(api, deployment, wait, deadline, as_json, outcomes):
    """The decision runs as a job: with `wait`, follow the deployment until it ends."""
    code = exits.OK
    if wait:
        deployment, code = follow_deployment(
            api, deployment, deadline, as_json, progress_log, outcomes=outcomes
        )
    emit(deployment, as_json, DEPLOYMENT_COLUMNS)
    raise SystemExit(code)


# --- monitoring --------------------------------------------------------------------------


@cli.group()
def incidents():
    """Incidents."""


@incidents.command("list")
@click.option("--state", type=click.Choice(["open", "acknowledged", "mitigated", "resolved"]))
@click.option(
    "--severity", type=click.Choice(["sev1", "sev2", "sev3", "sev4"], case_sensitive=False)
)
@click.option("--target", help="Only this target's incidents.")
@portal_options
def incidents_list(state, severity, target, url, token, as_json):
    """List incidents, unresolved first (at most 200)."""
    page = connect(url, token).get(
        "incidents/", state=state, severity=severity, target=target, page_size=200
    )
    emit(page["results"], as_json, INCIDENT_COLUMNS)


@cli.group()
def checks():
    """Health checks."""


@checks.command("list")
@click.option("--state", type=click.Choice(["unknown", "up", "down", "paused"]))
@click.option("--target", help="Only this target's checks.")
@portal_options
def checks_list(state, target, url, token, as_json):
    """List health checks with their state and last latency (at most 200)."""
    page = connect(url, token).get("checks/", state=state, target=target, page_size=200)
    emit(page["results"], as_json, CHECK_COLUMNS)


def main():
    cli(prog_name="mlops")
