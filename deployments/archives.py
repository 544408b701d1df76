"""Unpacking an uploaded or downloaded model archive (.zip, .tar, .tar.gz) safely.

An archive comes from a user, so every member is judged before anything is written:
- its name must stay inside the destination: no absolute path, no drive, no `..` part;
- links: a symlink or hardlink is refused when its target leaves the destination (MLflow
  models need no links, so a link inside is kept as a copy of nothing: refused too);
- devices, FIFOs and anything that is neither file nor folder are refused;
- the member count and the sum of the declared sizes stay under the limits, and the bytes
  actually written are counted again, so a zip whose headers lie cannot grow past them.

Everything goes into a fresh folder beside the destination, renamed into place only when the
whole archive is out; a refusal removes it, so nothing is ever half-written.
"""

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
CHUNK = 1024 * 1024


class ArchiveError(ValueError):
    """The archive is unsafe or unreadable; the message says which member and why."""


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def is_archive(path: str | Path) -> bool:
    """True when the file at `path` is a zip or a tar archive (by content, not by name)."""
    path = Path(path)
    if not path.is_file():
        return False
    return zipfile.is_zipfile(path) or _is_tar(path)


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def extract(archive: str | Path, destination: str | Path, *, max_bytes: int, max_files: int):
    """Unpack `archive` into the new folder `destination` (which must not exist); return
    it as a Path. Raises ArchiveError when a member is unsafe or a limit is passed."""
    archive, destination = Path(archive), Path(destination)
    partial = destination.with_name(destination.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, partial, max_bytes, max_files)
        elif _is_tar(archive):
            _extract_tar(archive, partial, max_bytes, max_files)
        else:
            raise ArchiveError("The artifact is neither a zip nor a tar archive.")
        partial.rename(destination)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return destination


def safe_member_path(root: Path, name: str) -> Path:
    """The path `name` takes under `root`; ArchiveError when it would leave `root`."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (posix.parts and ":" in posix.parts[0]):
        raise ArchiveError(f"The archive member {name!r} has an absolute path.")
    if ".." in posix.parts:
        raise ArchiveError(f"The archive member {name!r} points outside the model folder (..).")
    target = (root / Path(*posix.parts)) if posix.parts else root
    if not target.resolve().is_relative_to(root.resolve()):
        raise ArchiveError(f"The archive member {name!r} points outside the model folder.")
    return target


class _Budget:
    """Counts files and bytes written against the limits."""

    def __init__(self, max_bytes: int, max_files: int):
        self.max_bytes, self.max_files = max_bytes, max_files
        self.bytes = self.files = 0

    def add_file(self, name: str, declared_size: int) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise ArchiveError(f"The archive holds more than {self.max_files} files.")
        if declared_size > self.max_bytes:
            raise ArchiveError(
                f"The archive member {name!r} unpacks to {declared_size} bytes; "
                f"the limit is {self.max_bytes} bytes."
            )

    def copy(self, name: str, source, target: Path) -> None:
        try:
            handle = open(target, "xb")
        except (FileExistsError, IsADirectoryError):
            raise ArchiveError(f"The archive holds {name!r} twice.") from None
        with handle:
            for chunk in iter(lambda: source.read(CHUNK), b""):
                self.bytes += len(chunk)
                if self.bytes > self.max_bytes:
                    raise ArchiveError(
                        f"The archive unpacks to more than {self.max_bytes} bytes (at {name!r})."
                    )
                handle.write(chunk)


def _extract_zip(archive: Path, root: Path, max_bytes: int, max_files: int) -> None:
    budget = _Budget(max_bytes, max_files)
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for info in members:  # judge every member before writing any
                safe_member_path(root, info.filename)
                if _zip_is_symlink(info):
                    raise ArchiveError(f"The archive member {info.filename!r} is a symbolic link.")
                if not info.is_dir():
                    budget.add_file(info.filename, info.file_size)
            for info in members:
                target = safe_member_path(root, info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(info) as source:
                    budget.copy(info.filename, source, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise ArchiveError(f"The zip archive is unreadable: {exc}") from exc


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return (mode & 0o170000) == 0o120000


def _extract_tar(archive: Path, root: Path, max_bytes: int, max_files: int) -> None:
    budget = _Budget(max_bytes, max_files)
    try:
        with tarfile.open(archive) as bundle:
            members = bundle.getmembers()
            for member in members:
                safe_member_path(root, member.name)
                if member.issym() or member.islnk():
                    _check_tar_link(root, member)
                    raise ArchiveError(
                        f"The archive member {member.name!r} is a link; a model folder needs none."
                    )
                if not (member.isfile() or member.isdir()):
                    raise ArchiveError(
                        f"The archive member {member.name!r} is not a file or a folder."
                    )
                if member.isfile():
                    budget.add_file(member.name, member.size)
            for member in members:
                target = safe_member_path(root, member.name)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = bundle.extractfile(member)
                budget.copy(member.name, source, target)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"The tar archive is unreadable: {exc}") from exc


def _check_tar_link(root: Path, member: tarfile.TarInfo) -> None:
    """Name a link that leaves the folder as such (the clearer reason for the user)."""
    if member.issym():
        base = (root / member.name).parent
        target = base / member.linkname
    else:
        target = root / member.linkname
    if member.linkname.startswith("/") or not target.resolve().is_relative_to(root.resolve()):
        raise ArchiveError(
            f"The archive member {member.name!r} links to {member.linkname!r}, "
            "outside the model folder."
        )
