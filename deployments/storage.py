# placeholder: replaced at merge by the storage branch
"""Where a deploy target fetches a version's artifact from: one file behind one URL.

Placeholder of the storage branch's module, with the same signature: here the URL is a
`file://` URL on this host (the uploaded joblib pickle where it lies, or a .tar.gz bundle
of the version's MLflow model folder laid out under SERVING_DIR), which a Ray cluster on
this host can read. The storage branch signs an http(s) URL to object storage instead."""

import shutil
import tarfile
from pathlib import Path

from django.conf import settings

from deployments import sources


def signed_artifact_url(version, expires_in: int = 900) -> str:
    """A URL to ONE file holding `version`'s artifact: its joblib pickle, or a .tar.gz
    bundle of its MLflow model folder."""
    if version.artifact and version.flavor != "mlflow":
        try:
            return Path(version.artifact.path).resolve().as_uri()
        except NotImplementedError:  # remote storage: laid out below like a URI artifact
            pass
    bundles = Path(settings.SERVING_DIR) / "bundles"
    folder = bundles / f"version-{version.pk}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    local = sources.local_copy(version, folder)
    if not local.path.is_dir():
        return local.path.resolve().as_uri()
    bundle = bundles / f"version-{version.pk}.tar.gz"
    with tarfile.open(bundle, "w:gz") as archive:
        archive.add(local.path, arcname="model")
    return bundle.resolve().as_uri()
