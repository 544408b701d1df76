"""Model cards, generated from the registry, deployments, incidents and docs, so they are
always current and nobody writes them by hand."""

from deployments.choices import WAS_LIVE_STATES, DeploymentState
from deployments.models import Deployment
from monitoring.models import Incident


def model_card(model) -> dict:
    """Everything the card shows, as plain data (the API returns it as JSON)."""
    versions = list(model.versions.order_by("-number").select_related("registered_by"))
    deployments = list(
        Deployment.objects.filter(version__model=model, state__in=WAS_LIVE_STATES)
        .select_related("target", "version")
        .order_by("-finished_at")
    )
    incidents = list(
        Incident.objects.filter(version__model=model)
        .select_related("target")
        .order_by("-opened_at")
    )
    by_version = {}
    for deployment in deployments:
        entry = {
            "target": deployment.target.name,
            "environment": deployment.target.environment,
            "since": deployment.finished_at.isoformat() if deployment.finished_at else None,
            "deployment": deployment.pk,
            "live": deployment.state == DeploymentState.SUCCEEDED,
        }
        by_version.setdefault(deployment.version.number, []).append(entry)
    return {
        "model": model.name,
        "description": model.description,
        "owner": model.owner.username,
        "team": model.team,
        "tags": model.tags,
        "versions": [
            {
                "version": v.number,
                "status": v.status,
                "archived": v.archived,
                "registered_by": v.registered_by.username,
                "registered_at": v.created_at.isoformat(),
                "metrics": v.metrics,
                "params": v.params,
                "source_url": v.source_url,
                "deployed_now": [d for d in by_version.get(v.number, []) if d["live"]],
                "deployed_before": [d for d in by_version.get(v.number, []) if not d["live"]],
            }
            for v in versions
        ],
        "incidents": [
            {
                "id": i.pk,
                "title": i.title,
                "severity": i.severity,
                "state": i.state,
                "target": i.target.name if i.target else None,
                "opened_at": i.opened_at.isoformat(),
            }
            for i in incidents
        ],
        "pages": [{"slug": p.slug, "title": p.title} for p in model.pages.order_by("title")],
    }


def card_markdown(card: dict) -> str:
    """The card as a Markdown document (download, or paste into a review)."""
    lines = [f"# Model card: {card['model']}", ""]
    lines += [f"Owner: {card['owner']}" + (f" · team {card['team']}" if card["team"] else "")]
    if card["tags"]:
        lines += [f"Tags: {', '.join(card['tags'])}"]
    lines += ["", card["description"] or "_No description._", "", "## Versions", ""]
    metric_names = sorted({name for v in card["versions"] for name in v["metrics"]})
    lines += ["| version | status | " + " | ".join(metric_names) + " | deployed now | before |"]
    lines += ["|---" * (len(metric_names) + 4) + "|"]
    for v in card["versions"]:
        metrics = " | ".join(str(v["metrics"].get(name, "—")) for name in metric_names)
        now = ", ".join(d["target"] for d in v["deployed_now"]) or "—"
        before = ", ".join(sorted({d["target"] for d in v["deployed_before"]})) or "—"
        lines += [f"| v{v['version']} | {v['status']} | {metrics} | {now} | {before} |"]
    lines += ["", "## Incidents", ""]
    lines += [
        f"- #{i['id']} {i['title']} ({i['severity'].upper()}, {i['state']}, {i['opened_at'][:16]})"
        for i in card["incidents"]
    ] or ["None recorded."]
    lines += ["", "## Documentation", ""]
    lines += [f"- [[{p['slug']}|{p['title']}]]" for p in card["pages"]] or ["No linked pages."]
    return "\n".join(lines) + "\n"
