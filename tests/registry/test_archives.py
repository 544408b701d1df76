"""Unpacking model archives safely: nothing is written outside the model folder, nothing
half-written, and the limits hold against zip bombs."""

import io
import tarfile
import tempfile
import zipfile

import pytest
from django.core.files.base import ContentFile

from deployments import services
from deployments.archives import ArchiveError, extract
from deployments.choices import VersionStatus
from tests.factories import lightgbm_model_folder, validated

LIMITS = {"max_bytes": 10_000, "max_files": 10}


def a_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def a_tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for info, data in members:
            bundle.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def unpack(tmp_path, data: bytes, **limits):
    archive = tmp_path / "upload"
    archive.write_bytes(data)
    return extract(archive, tmp_path / "box" / "model", **{**LIMITS, **limits})


def everything_under(tmp_path) -> list[str]:
    return sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    "data, reason",
    [
        (a_zip({"MLmodel": b"x", "../evil.txt": b"owned"}), "points outside the model folder (..)"),
        (a_zip({"/tmp/evil.txt": b"owned"}), "has an absolute path"),
        (a_zip({"a/../../evil.txt": b"owned"}), "points outside the model folder (..)"),
        (a_tar(file_member("../evil.txt", b"owned")), "points outside the model folder (..)"),
        (a_tar(link_member("MLmodel", "/etc/passwd")), "links to '/etc/passwd', outside"),
        (a_tar(link_member("m/data", "../../outside")), "links to '../../outside', outside"),
        (
            a_tar(link_member("MLmodel", "/etc/passwd", tarfile.LNKTYPE)),
            "links to '/etc/passwd', outside",
        ),
        (a_tar(link_member("MLmodel", "conda.yaml")), "is a link; a model folder needs none"),
    ],
)
def test_an_unsafe_member_is_refused_and_nothing_is_written(tmp_path, data, reason):
    with pytest.raises(ArchiveError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        unpack(tmp_path, data)
    assert everything_under(tmp_path) == ["box", "upload"]  # no half-written model folder


def test_a_zip_bomb_is_stopped_by_the_unpacked_size(tmp_path):
    bomb = a_zip({"MLmodel": b"0" * 50_000})  # compresses to a few hundred bytes
    assert len(bomb) < 1_000
    with pytest.raises(ArchiveError, match="unpacks to 50000 bytes; the limit is 10000"):
        unpack(tmp_path, bomb)
    assert everything_under(tmp_path) == ["box", "upload"]


def test_headers_that_lie_about_sizes_are_caught_while_writing(tmp_path):
    data = bytearray(a_zip({"MLmodel": b"0" * 50_000}))
    # Patch the declared uncompressed size (local header and central directory) to 1.
    for offset in (22, data.rfind(b"PK\x01\x02") + 24):
        data[offset : offset + 4] = (1).to_bytes(4, "little")
    with pytest.raises(ArchiveError):
        unpack(tmp_path, bytes(data))
    assert everything_under(tmp_path) == ["box", "upload"]


def test_too_many_files_are_refused(tmp_path):
    with pytest.raises(ArchiveError, match="more than 10 files"):
        unpack(tmp_path, a_zip({f"f{n}": b"" for n in range(11)}))


def test_a_safe_archive_unpacks_in_place(tmp_path):
    root = unpack(tmp_path, a_zip({"m/MLmodel": b"flavors: {}", "m/data/x.bin": b"1"}))
    assert (root / "m" / "data" / "x.bin").read_bytes() == b"1"
    assert everything_under(tmp_path) == [
        "box", "box/model", "box/model/m", "box/model/m/MLmodel", "box/model/m/data",
        "box/model/m/data/x.bin", "upload",
    ]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("m.zip", a_zip({"MLmodel": b"x", "../evil.txt": b"owned"}), "points outside"),
        ("m.tar.gz", a_tar(link_member("MLmodel", "/etc/passwd")), "links to '/etc/passwd'"),
    ],
)
def test_an_unsafe_upload_makes_an_invalid_version_and_writes_nothing_outside(
    alice, churn, tmp_path, monkeypatch, name, data, reason
):
    lightgbm_model_folder()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    version = services.register_version(alice, churn.name, artifact=ContentFile(data, name=name))
    version = validated(version)
    assert version.status == VersionStatus.INVALID
    assert reason in version.status_detail
    assert everything_under(tmp_path) == []  # validation's folder is gone, nothing escaped


@pytest.mark.django_db
def test_an_upload_unpacking_past_the_limit_is_invalid(alice, churn, settings):
    settings.ARTIFACT_MAX_EXTRACTED_BYTES = 10_000
    data = a_zip({"MLmodel": b"0" * 50_000})
    version = services.register_version(alice, churn.name, artifact=ContentFile(data, name="m.zip"))
    version = validated(version)
    assert version.status == VersionStatus.INVALID
    assert version.status_detail == (
        "The archive member 'MLmodel' unpacks to 50000 bytes; the limit is 10000 bytes."
    )
