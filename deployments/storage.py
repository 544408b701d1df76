# placeholder: replaced at merge by the storage branch
"""Where a model server outside this host fetches a version's artifact from.

A placeholder with the storage branch's interface, so the `kserve` backend can call
`storage_uri`; the storage branch's module (S3 keys, signed portal URLs) replaces it."""

from pathlib import Path

# URI schemes KServe's storage initializer downloads from itself.
REMOTE_SCHEMES = ("s3://", "gs://", "http://", "https://")


def storage_uri(version) -> str:
    """The URI a cluster fetches `version`'s artifact from: its own URI when the storage
    initializer can read it, otherwise a URL of the portal's copy."""
    if version.artifact_uri.startswith(REMOTE_SCHEMES):
        return version.artifact_uri
    return signed_artifact_url(version)


def signed_artifact_url(version, expires_in: int = 900) -> str:
    """A URL of the uploaded artifact (placeholder: a file:// URL of the local file)."""
    if version.artifact:
        return Path(version.artifact.path).as_uri()
    return version.artifact_uri
