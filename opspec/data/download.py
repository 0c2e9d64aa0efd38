"""`download NAME`: fetch a known dataset with resume, verify its checksum, extract it, convert it.

Rules: bytes go to `<file>.part` and a later run resumes it with an HTTP Range request (a server that
answers a ranged request with 200 gets a restart from zero); the `.part` is renamed to the final name only
after its size and checksum are verified, so a file under its final name is always complete; a file that
fails verification is deleted. Archives are extracted into a temp folder renamed into place, and the result
is converted to `<dest>/<name>.h5` by `opspec.data.convert` (itself atomic).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import replace
from pathlib import Path

from opspec.data import sources
from opspec.data.convert import convert
from opspec.data.canonical import is_write_failure, os_reason
from opspec.data.outputs import check_output_folder, check_space
from opspec.data.sources import SOURCES, Source
from opspec.core.errors import OpspecError
from opspec.core.fileio import atomic_path, remove_stale_temps, temp_prefix

DEFAULT_DEST = Path("datasets")
BLOCK = 1 << 20
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, TimeoutError)


def _hash_file(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read a block at a time."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, *, size: int | None, checksum: str | None, what: str, then: str = "") -> None:
    """Raise OpspecError unless `path` has the expected size and checksum ("md5:…" or "sha256:…").

    The message names `what` and ends with `then` (what happened to the file, what to do next).
    """
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise OpspecError(f"{what}: {actual} bytes, expected {size}{then}")
    if checksum is not None:
        algorithm, _, expected = checksum.partition(":")
        if algorithm not in ("md5", "sha256") or not expected:
            raise OpspecError(f"{what}: checksum {checksum!r} is not 'md5:<hex>' or 'sha256:<hex>'")
        got = _hash_file(path, algorithm)
        if got != expected.lower():
            raise OpspecError(f"{what}: {algorithm} mismatch (expected {expected}, got {got}){then}")


def _request(url: str, offset: int, timeout: float):
    """Open `url`, asking for bytes from `offset` on when resuming."""
    headers = {"User-Agent": "opspec-download", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _transfer(url: str, part: Path, *, size: int | None, timeout: float, bar) -> None:
    """One HTTP request appended to `part`; raises a network error if the connection drops early."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    try:
        response = _request(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and size is not None and offset == size:
            return
        if err.code == 416:
            part.unlink(missing_ok=True)
            raise ConnectionError("server refused the resume range; restarting from zero") from None
        raise OpspecError(f"{url}: HTTP {err.code} {err.reason}") from None
    with response:
        if offset and response.status == 200:
            offset = 0
        elif offset and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink()
            raise ConnectionError(f"server resumed at the wrong place ({response.headers.get('Content-Range')}); restarting")
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        bar.reset(total=(offset + expected) if expected is not None else size)
        bar.update(offset)
        received = 0
        with open(part, "ab" if offset else "wb") as fh:
            while block := response.read(BLOCK):
                fh.write(block)
                received += len(block)
                bar.update(len(block))
        if expected is not None and received < expected:
            raise ConnectionError(f"connection closed after {received} of {expected} bytes")


def _kept(part: Path) -> str:
    """What a failed transfer leaves: the part file to resume from, named only when it holds bytes."""
    have = part.stat().st_size if part.exists() else 0
    return f"{have} bytes kept in {part}, run again to resume" if have else "nothing was saved, run again"


def fetch(
    url: str,
    path: str | os.PathLike,
    *,
    size: int | None = None,
    checksum: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
    backoff: float = 1.0,
) -> Path:
    """Download `url` to `path` through `path.part` with resume; rename into place only once verified."""
    from tqdm import tqdm

    path = Path(path)
    if path.exists():
        verify(path, size=size, checksum=checksum, what=str(path),
               then=" (a file already under the download's name); delete it to download again")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    if size is not None:
        check_space(part, size - (part.stat().st_size if part.exists() else 0), flag="--dest")
    with tqdm(total=size, unit="B", unit_scale=True, desc=path.name, disable=not progress) as bar:
        for attempt in range(retries + 1):
            try:
                _transfer(url, part, size=size, timeout=timeout, bar=bar)
                break
            except NETWORK_ERRORS as err:
                if attempt == retries:
                    raise OpspecError(f"{url}: download failed after {retries + 1} attempts ({err}); {_kept(part)}") from None
                time.sleep(backoff * (attempt + 1))
            except OSError as err:  # the disk, not the network: retrying would not help
                if not is_write_failure(err):
                    raise
                raise OpspecError(f"{part}: cannot write ({os_reason(err)}); {_kept(part)}") from None
    try:
        verify(part, size=size, checksum=checksum, what=url, then="; the corrupt download was removed, run again")
    except OpspecError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)
    return path


def resolve_zenodo(source: Source, timeout: float = 30.0) -> Source:
    """Fill size, md5 and the file URL from Zenodo's records API, as neuraloperator's own loader does."""
    if source.zenodo is None or source.checksum is not None:
        return source
    record, key = source.zenodo
    api = f"{sources.ZENODO_API}{record}"
    try:
        with urllib.request.urlopen(api, timeout=timeout) as response:
            files = json.load(response).get("files", [])
    except NETWORK_ERRORS + (ValueError,) as err:
        raise OpspecError(f"{api}: cannot read the Zenodo record to get {key}'s checksum ({err})") from None
    for entry in files:
        if entry.get("key") == key:
            url = (entry.get("links") or {}).get("self") or source.url
            return replace(source, url=url, size=entry.get("size"), checksum=entry.get("checksum"))
    raise OpspecError(f"{api}: Zenodo record {record} has no file {key!r}")


def _safe_members(names: list[str], archive: Path) -> None:
    """Refuse archive members that would land outside the extraction folder."""
    for name in names:
        p = Path(name)
        if p.is_absolute() or ".." in p.parts:
            raise OpspecError(f"{archive}: unsafe member path {name!r}; not extracting")


def extract(archive: Path, kind: str, dest: Path) -> Path:
    """Unpack a tar or zip archive into `dest` (created atomically from a temp folder); regular files only."""
    if dest.exists():
        return dest
    remove_stale_temps(dest)  # folders left by extractions that were killed
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dest), suffix=".tmp", dir=dest.parent))
    try:
        if kind == "tar":
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
                _safe_members([m.name for m in members], archive)
                tar.extractall(tmp, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        elif kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                _safe_members(zf.namelist(), archive)
                zf.extractall(tmp)
        else:
            raise OpspecError(f"{archive}: unknown archive kind {kind!r} (expected tar or zip)")
        os.replace(tmp, dest)
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as err:
        raise OpspecError(f"{archive}: cannot extract ({type(err).__name__}: {err})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def _member(folder: Path, name: str, archive: Path) -> Path:
    """The extracted file called `name`, wherever the archive put it."""
    found = sorted(folder.rglob(name))
    if not found:
        raise OpspecError(f"{archive}: expected a member {name!r}, found {sorted(p.name for p in folder.rglob('*'))}")
    return found[0]


def _checksum_file(raw: Path) -> Path:
    """Where the checksum a raw file was verified against is kept (Zenodo's, so a rerun needs no network)."""
    return raw.with_name(raw.name + ".checksum")


def _with_checksum(source: Source, raw: Path) -> Source:
    """The source with a checksum to verify `raw` against: its own, the one kept beside the raw file, or Zenodo's."""
    if source.checksum is None and raw.exists() and _checksum_file(raw).exists():
        source = replace(source, checksum=_checksum_file(raw).read_text().strip() or None)
    if source.checksum is None:
        source = resolve_zenodo(source)
    if source.checksum is None:
        raise OpspecError(f"{source.name}: no published checksum, refusing to use an unverified download")
    return source


def _remember_checksum(source: Source, raw: Path) -> None:
    """Keep a checksum that came from Zenodo beside the verified raw file."""
    if source.zenodo is not None and source.checksum is not None and not _checksum_file(raw).exists():
        with atomic_path(_checksum_file(raw)) as tmp:
            tmp.write_text(source.checksum + "\n")


def paths(source: Source, dest: Path) -> dict[str, Path]:
    """Where a source's raw file, partial file and canonical file live under `dest`."""
    raw = dest / "raw" / source.filename
    return {"raw": raw, "part": raw.with_name(raw.name + ".part"), "canonical": dest / f"{source.name}.h5"}


def check_downloaded(path: Path, source: Source) -> Path:
    """`path`, a file already under the canonical name of `source`, if it is that download's canonical file
    (readable, converted from this dataset); one line saying what it is otherwise."""
    from opspec.data.canonical import CanonicalFile

    then = "; delete it (or move it away) to download again"
    try:
        with CanonicalFile(path) as file:
            dataset = str(file.attrs.get("dataset", ""))
    except (OpspecError, OSError) as err:
        raise OpspecError(f"{path}: already exists but is not a readable canonical file ({str(err)[:160]}){then}") from None
    if dataset != source.name:
        raise OpspecError(f"{path}: already exists but holds {'dataset ' + repr(dataset) if dataset else 'no download'}, "
                          f"expected dataset {source.name!r}{then}")
    return path


def download(name: str | Source, dest: str | os.PathLike = DEFAULT_DEST, *, progress: bool = True, **fetch_kwargs) -> Path:
    """Download, verify, extract and convert one registry entry; returns the canonical file."""
    if isinstance(name, Source):
        source = name
    elif name in SOURCES:
        source = SOURCES[name]
    else:
        raise OpspecError(f"dataset {name!r}: not in the registry; known: {', '.join(SOURCES)}")
    dest = Path(dest)
    where = paths(source, dest)
    if where["canonical"].exists():
        return check_downloaded(where["canonical"], source)
    check_output_folder(dest, flag="--dest")
    source = _with_checksum(source, where["raw"])
    fetch(source.url, where["raw"], size=source.size, checksum=source.checksum, progress=progress, **fetch_kwargs)
    _remember_checksum(source, where["raw"])
    raw, pair = where["raw"], None
    if source.archive is not None:
        folder = extract(where["raw"], source.archive, where["raw"].with_name(where["raw"].name + ".d"))
        raw = _member(folder, source.train_member, where["raw"]) if source.train_member else raw
        pair = _member(folder, source.test_member, where["raw"]) if source.test_member else None
    return convert(
        raw, where["canonical"], problem=source.problem, fmt=source.fmt, pair=pair,
        split="train" if pair is not None else source.split, attrs={"dataset": source.name, "url": source.url},
        progress=progress,
    )


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(size)


def status(source: Source, dest: Path) -> str:
    """What of a source is on disk: converted, downloaded, partial (bytes), or nothing."""
    where = paths(source, dest)
    if where["canonical"].exists():
        return f"converted ({where['canonical']})"
    if where["raw"].exists():
        return "downloaded"
    if where["part"].exists():
        return f"partial ({_human(where['part'].stat().st_size)})"
    return "-"


def add_download_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add `download NAME [--dest DIR]` and `list [--dest DIR]` to a CLI."""
    d = subparsers.add_parser("download", help="download, verify and convert a known public dataset")
    d.add_argument("name", help="a registry name (see `list`)")
    d.add_argument("--dest", default=str(DEFAULT_DEST), help="folder for raw and canonical files (default datasets/)")
    d.set_defaults(func=run_download)
    ls = subparsers.add_parser("list", help="show the known datasets, their sizes and whether each is on disk")
    ls.add_argument("--dest", default=str(DEFAULT_DEST))
    ls.set_defaults(func=run_list)


def run_download(args: argparse.Namespace) -> int:
    """The `download` command."""
    out = download(args.name, args.dest, progress=sys.stderr.isatty())
    print(f"{args.name}: {out}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """The `list` command: one line per registry entry."""
    dest = Path(args.dest)
    width = max(len(n) for n in SOURCES)
    for s in SOURCES.values():
        check = s.checksum.split(":")[0] if s.checksum else ("md5 via Zenodo API" if s.zenodo else "none")
        print(f"{s.name:<{width}}  {_human(s.size):>8}  {check:<18}  {status(s, dest)}")
    return 0
