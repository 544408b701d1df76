"""Deploy backends: small classes that put a model version behind an endpoint.

Each has `deploy(deployment, log) -> Outcome`, `stop(deployment) -> str | None` (what it
stopped, for the deployment's timeline) and `status(deployment)`;
`clean_settings(raw)` validates a target's settings when the target is saved, so a wrong
setting is a form/API error instead of a failed job later: each setting's type and bounds
from its `SettingSpec`, then the backend's own rules (`check_values`)."""

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from deployments.choices import Backend as BackendName


class DeployError(Exception):
    """The deploy cannot go on; the message is the reason users see."""


@dataclass(frozen=True)
class Outcome:
    """What `deploy` achieved: a serving endpoint, or a hand-off awaiting a callback."""

    endpoint: str = ""
    awaiting_callback: bool = False


KIND_ERRORS = {
    int: "must be a whole number",
    bool: "must be true or false",
    float: "must be a number",
    str: "must be text",
}


@dataclass(frozen=True)
class SettingSpec:
    """One setting of a backend: its type (int, float, bool or str), default, whether it
    is required or a secret, and a number's bounds, all checked by `clean_settings`."""

    name: str
    kind: type
    default: object = None
    required: bool = False
    secret: bool = False
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    # The minimum itself is refused too (a replica needs more than 0 CPUs).
    above_minimum: bool = False

    def kind_error(self, value) -> str | None:
        """Why `value` is not of this setting's type, or None. JSON's true and false are
        not numbers here, though Python's bool is an int."""
        if self.kind is bool:
            fits = isinstance(value, bool)
        elif self.kind is float:
            fits = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            fits = isinstance(value, self.kind) and not isinstance(value, bool)
        return None if fits else f"{self.name} {KIND_ERRORS[self.kind]}."

    def bounds_error(self, value) -> str | None:
        """Why the number `value` is out of this setting's bounds, or None."""
        low, high = self.minimum, self.maximum
        too_low = low is not None and (value <= low if self.above_minimum else value < low)
        if not too_low and (high is None or value <= high):
            return None
        if low is None:
            return f"{self.name} must be at most {high}."
        least = f"more than {low}" if self.above_minimum else f"at least {low}"
        if high is None:
            return f"{self.name} must be {least}."
        if self.above_minimum:
            return f"{self.name} must be {least} and at most {high}."
        return f"{self.name} must be between {low} and {high}."


class DeployBackend:
    settings_spec: tuple[SettingSpec, ...] = ()
    # True on backends that split traffic: start_canary, set_canary_weight, promote_canary
    # and abort_canary (see deployments/backends/kserve.py).
    supports_canary = False

    def __init__(self, target):
        self.target = target
        self.settings = {**self.defaults(), **(target.backend_settings or {})}

    @classmethod
    def defaults(cls) -> dict:
        return {spec.name: spec.default for spec in cls.settings_spec if spec.default is not None}

    @classmethod
    def secret_names(cls) -> set[str]:
        return {spec.name for spec in cls.settings_spec if spec.secret}

    @classmethod
    def clean_settings(cls, raw: dict, previous: dict | None = None) -> dict:
        """Return the validated settings; a blank secret keeps the previous one."""
        if not isinstance(raw, dict):
            raise ValidationError({"backend_settings": ["Give a JSON object of settings."]})
        known = {spec.name: spec for spec in cls.settings_spec}
        errors = [f"Unknown setting {name!r}." for name in raw if name not in known]
        cleaned = {}
        for spec in cls.settings_spec:
            value = raw.get(spec.name)
            if spec.secret and value in (None, "") and previous and previous.get(spec.name):
                value = previous[spec.name]
            if value in (None, ""):
                if spec.required:
                    errors.append(f"{spec.name} is required: {spec.help}")
                continue
            if kind_error := spec.kind_error(value):
                errors.append(kind_error)
                continue
            if spec.kind in (int, float) and (bounds_error := spec.bounds_error(value)):
                errors.append(bounds_error)
            # Kept even when out of bounds: check_values' rules between settings compare
            # what was given (any error refuses the whole set).
            cleaned[spec.name] = value
        errors += cls.check_values(cleaned)
        if errors:
            raise ValidationError({"backend_settings": errors})
        return cleaned

    @classmethod
    def check_values(cls, cleaned: dict) -> list[str]:
        """Backend-specific checks on typed values (formats, rules between settings; the
        bounds of one number are its SettingSpec's); return error messages."""
        return []

    def deploy(self, deployment, log) -> Outcome:
        raise NotImplementedError

    def stop(self, deployment) -> str | None:
        """Stop what `deploy` started; return what was stopped (for the timeline), or None
        when nothing was running. Safe to call twice, and from two processes at once."""
        raise NotImplementedError

    def status(self, deployment) -> str:
        raise NotImplementedError

    def canary_metrics_urls(self, deployment, stable) -> tuple[str, str] | None:
        """The /metrics URLs of `stable`'s server and of the canary's, for the analysis
        between steps (services.canary); None when the backend cannot reach each version
        apart (then the steps advance on time alone, and the timeline says so)."""
        return None


def backend_class(name: str) -> type[DeployBackend]:
    from deployments.backends.kserve import KServeBackend
    from deployments.backends.local import LocalBackend
    from deployments.backends.ray_serve import RayServeBackend
    from deployments.backends.webhook import WebhookBackend

    classes = {
        BackendName.LOCAL: LocalBackend,
        BackendName.WEBHOOK: WebhookBackend,
        BackendName.KSERVE: KServeBackend,
        BackendName.RAY: RayServeBackend,
    }
    try:
        return classes[name]
    except KeyError:
        raise ValidationError({"backend": [f"Unknown backend {name!r}."]}) from None


def backend_for(target) -> DeployBackend:
    return backend_class(target.backend)(target)


def public_settings(backend: str, settings: dict) -> dict:
    """The settings with every secret replaced by a marker: safe for pages, API and logs."""
    secrets = backend_class(backend).secret_names()
    return {name: ("********" if name in secrets else value) for name, value in settings.items()}
