from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction

from deployments import services
from deployments.demo import DEMO_MODELS, artifact_filename
from deployments.models import RegisteredModel, Target
from mlops_portal.core.audit import acting_as
from mlops_portal.core.roles import Role
from mlops_portal.overview.demo_history import write_history
from monitoring.choices import Comparison, RuleMetric, Severity
from monitoring.services import alerts

# username, password, role (None = superuser). Demo only: never load this in production.
DEMO_USERS = [
    ("alice", "alice-demo-2026", Role.DATA_SCIENTIST),
    ("bob", "bob-demo-2026", Role.MLOPS_ENGINEER),
    ("carol", "carol-demo-2026", Role.VIEWER),
    ("admin", "admin-demo-2026", None),
]


class Command(BaseCommand):
    help = (
        "Create demo users and register small scikit-learn models and a LightGBM MLflow "
        "model (safe to run again)."
    )

    def handle(self, *args, **options):
        users = {
            name: self.ensure_user(name, password, role) for name, password, role in DEMO_USERS
        }
        created = 0
        for name, team, tags, description, trainer, versions in DEMO_MODELS:
            if RegisteredModel.objects.filter(name=name).exists():
                continue
            with acting_as(users["alice"]):
                self.register_model(
                    users["alice"], name, team, tags, description, trainer, versions
                )
            created += 1
        if not Target.objects.exists():
            with acting_as(users["bob"]):
                self.create_targets_and_deployments(users["alice"], users["bob"])
            self.stdout.write(
                f"Demo data: {created} new models and eight weeks of deployment history; "
                "iris-classifier v2 deploys to iris-staging when the worker starts, and v3 "
                "waits for approval on iris-production."
            )
        else:
            # A re-run changes nothing that exists: say so, not what the first run did.
            self.stdout.write(
                f"Demo data already loaded ({created} new models); the portal keeps its "
                "state from the last run."
            )
        self.stdout.write(
            "Demo users (password): "
            + ", ".join(
                f"{name} ({password}, {role.label if role else 'admin'})"
                for name, password, role in DEMO_USERS
            )
        )

    def ensure_user(self, username, password, role):
        user, _ = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        user.set_password(password)
        user.is_superuser = user.is_staff = role is None
        user.save()
        if role is not None:
            user.groups.set([Group.objects.get(name=role)])
        return user

    @transaction.atomic
    def create_targets_and_deployments(self, alice, bob):
        staging = services.create_target(
            bob, name="iris-staging", environment="staging",
            description="Local staging: deploys without approval.",
            # Half of its requests are logged, so the demo's quality chart fills quickly.
            backend_settings={"prediction_sample_rate": 0.5},
        )  # fmt: skip
        production = services.create_target(
            bob, name="iris-production", environment="production",
            rollback_skips_approval=True,
            description="Local production: an engineer other than the requester approves.",
        )  # fmt: skip
        iris = RegisteredModel.objects.get(name="iris-classifier")
        write_history(iris, staging, production, alice, bob)
        v2, v3 = (iris.versions.get(number=n) for n in (2, 3))
        # `simulate_traffic` drifts the inputs after a few minutes: this rule then fires.
        alerts.create_rule(
            bob, name="iris live accuracy", model=iris, metric=RuleMetric.LIVE_ACCURACY,
            comparison=Comparison.LT, threshold=80, for_minutes=3, severity=Severity.SEV3,
        )  # fmt: skip
        services.request_deployment(
            alice, version=v2, target=staging, reason="Demo: v2 has the best accuracy."
        )
        services.request_deployment(
            alice, version=v3, target=production, reason="Demo: same accuracy, stronger C."
        )

    @transaction.atomic
    def register_model(self, owner, name, team, tags, description, trainer, versions):
        model = services.create_model(
            owner, name=name, team=team, tags=tags, description=description
        )
        for kwargs in versions:
            artifact, metrics, params, sample = trainer(**kwargs)
            version = register_demo_version(
                owner,
                model.name,
                artifact=ContentFile(artifact, name=artifact_filename(artifact)),
                metrics=metrics,
                params=params,
                sample_input=sample,
                source_url="https://git.example.com/ml/demo-models",
                description=f"Trained by the demo data command with {params}.",
            )
            # Validate now (the worker's job, same service) so the demo can deploy at once;
            # the queued validation task then finds nothing left to do.
            services.validate_version(version.pk)


def register_demo_version(owner, model_name, **fields):
    """Register one demo version: the one place the demo does it. Today through the
    registry service; once the MLflow-compatible API (/api/2.0/mlflow/) is in, the MLflow
    model can go through `MlflowClient.create_model_version` against the running portal
    instead, as teams will do."""
    return services.register_version(owner, model_name, **fields)
