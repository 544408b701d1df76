import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile

from deployments import services
from deployments.demo import train_iris
from deployments.models import RegisteredModel

PASSWORD = "password"


class UserFactory(factory.django.DjangoModelFactory):
    """A user with password 'password', in the group of `role` when one is given."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")

    @factory.post_generation
    def role(user, create, extracted, **kwargs):
        user.set_password(PASSWORD)
        user.save()
        if extracted:
            group, _ = Group.objects.get_or_create(name=extracted)
            user.groups.add(group)


class RegisteredModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RegisteredModel

    name = factory.Sequence(lambda n: f"model-{n}")
    owner = factory.SubFactory(UserFactory)
    team = "forecasting"


_IRIS_CACHE: dict = {}


def iris_artifact():
    """A real, small scikit-learn model: (joblib bytes, metrics, params, sample rows)."""
    if "iris" not in _IRIS_CACHE:
        _IRIS_CACHE["iris"] = train_iris(c=1.0)
    return _IRIS_CACHE["iris"]


def register_iris_version(user, model, **overrides):
    """Register a real iris version of `model` through the service, as `user`."""
    artifact, metrics, params, sample = iris_artifact()
    fields = {
        "artifact": ContentFile(artifact, name="model.joblib"),
        "metrics": metrics,
        "params": params,
        "sample_input": sample,
        **overrides,
    }
    return services.register_version(user, model.name, **fields)


def validated(version):
    """`version` validated in this process, as the worker would; when a live worker claimed
    it first (worker tests send the validation task), wait for the worker's outcome."""
    import time

    from deployments.choices import VersionStatus

    outcome = services.validate_version(version.pk)
    deadline = time.monotonic() + 30
    while outcome is None or outcome.status not in (VersionStatus.READY, VersionStatus.INVALID):
        if time.monotonic() > deadline:
            raise AssertionError(f"{version} was not validated within 30 s")
        time.sleep(0.1)
        outcome = type(version).objects.get(pk=version.pk)
    return outcome


_LIGHTGBM: dict = {}


def lightgbm_model_folder():
    """A real LightGBM MLflow model folder (mlflow.lightgbm.save_model), made once per
    session: (Path of the folder, metrics, params, sample rows)."""
    if "folder" not in _LIGHTGBM:
        import tempfile
        from pathlib import Path

        from deployments.demo import save_lightgbm_model

        folder = Path(tempfile.mkdtemp(prefix="tests-lightgbm-")) / "model"
        _LIGHTGBM["folder"] = (folder, *save_lightgbm_model(folder))
    return _LIGHTGBM["folder"]


def lightgbm_zip() -> bytes:
    """The LightGBM MLflow model folder as a zip archive."""
    from deployments.demo import zip_folder

    return zip_folder(lightgbm_model_folder()[0])
