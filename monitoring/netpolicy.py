"""Where health checks may point: the portal's network policy (mlops_portal.core.netpolicy) read
from HEALTHCHECK_ALLOWED_NETWORKS."""

from mlops_portal.core import netpolicy
from mlops_portal.core.netpolicy import DEFAULT_ALLOWED

__all__ = ["DEFAULT_ALLOWED", "SETTING", "NetPolicy", "policy_from_settings"]

SETTING = "HEALTHCHECK_ALLOWED_NETWORKS"


class NetPolicy(netpolicy.NetPolicy):
    SETTING = SETTING
    WHO = "probes"


def policy_from_settings() -> NetPolicy:
    """The policy configured in Django settings (DEFAULT_ALLOWED when unset)."""
    from django.conf import settings

    return NetPolicy.from_setting(getattr(settings, SETTING, DEFAULT_ALLOWED))
