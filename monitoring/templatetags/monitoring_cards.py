"""Monitoring's cards on other apps' pages, so those apps need not import monitoring."""

from django import template

from monitoring.behaviour import production_stats

register = template.Library()


@register.inclusion_tag("monitoring/_production_scorecard.html")
def production_scorecard(version) -> dict:
    """How `version` behaved while live on production targets (the version page)."""
    return {"production": production_stats(version)}
