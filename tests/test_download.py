"""download: resume, verify, atomic rename, extract and convert, against a local HTTP server (no internet)."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import h5py
import numpy as np
import pytest
import torch

from opspec.data import download as dl
from opspec.data import sources
from opspec.data.canonical import CanonicalFile
from opspec.data.sources import SOURCES, Source
from opspec.core.errors import OpspecError


class Handler(BaseHTTPRequestHandler):
    """Serves `files` by path; honours Range unless `ignore_range`; the first `drops` requests of a file
    are cut after `drop_after` bytes (the connection is closed mid-body)."""

    files: dict[str, bytes] = {}
    ignore_range = False
    drop_after = 0
    drops = 0
    log: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        cls = type(self)
        body = cls.files.get(self.path)
        rng = self.headers.get("Range")
        cls.log.append((self.path, rng))
        if body is None:
            self.send_error(404)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and not cls.ignore_range:
            start = int(m.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if cls.drops > 0:
            cls.drops -= 1
            self.wfile.write(payload[: cls.drop_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    Handler.files, Handler.ignore_range, Handler.drop_after, Handler.drops, Handler.log = {}, False, 0, 0, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


FAST = {"progress": False, "timeout": 5.0, "backoff": 0.0}


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def pdebench_darcy_bytes(tmp_path, n=10, s=8) -> tuple[bytes, np.ndarray]:
    nu = np.random.default_rng(1).random((n, s, s)).astype(np.float32)
    path = tmp_path / "src.hdf5"
    with h5py.File(path, "w") as h:
        h["nu"], h["tensor"] = nu, nu[:, None] * 2
    return path.read_bytes(), nu


def test_full_download_verify_convert(tmp_path, server):
    body, nu = pdebench_darcy_bytes(tmp_path)
    Handler.files["/darcy.hdf5"] = body
    source = Source("t-darcy", f"{server}/darcy.hdf5", "darcy.hdf5", "darcy", "pdebench", size=len(body), checksum=md5(body))
    out = dl.download(source, tmp_path / "ds", **FAST)
    assert out == tmp_path / "ds" / "t-darcy.h5"
    assert (tmp_path / "ds" / "raw" / "darcy.hdf5").read_bytes() == body
    assert not (tmp_path / "ds" / "raw" / "darcy.hdf5.part").exists()
    with CanonicalFile(out) as f:
        np.testing.assert_allclose(f.read("train", "a"), nu[:9])
        assert f.attrs["dataset"] == "t-darcy"
    assert dl.download(source, tmp_path / "ds", **FAST) == out
    assert len(Handler.log) == 1


def test_dropped_connection_resumes_with_range(tmp_path, server):
    body = bytes(range(256)) * 400
    Handler.files["/f.bin"] = body
    Handler.drop_after, Handler.drops = 30000, 1
    path = dl.fetch(f"{server}/f.bin", tmp_path / "f.bin", size=len(body), checksum=md5(body), **FAST)
    assert path.read_bytes() == body
    assert Handler.log[0][1] is None and Handler.log[1][1] == "bytes=30000-"


def test_partial_file_survives_a_failed_run_and_resumes_later(tmp_path, server):
    body = b"abcdefgh" * 5000
    Handler.files["/f.bin"] = body
    Handler.drop_after, Handler.drops = 12345, 1
    with pytest.raises(OpspecError, match="run again to resume"):
        dl.fetch(f"{server}/f.bin", tmp_path / "f.bin", size=len(body), checksum=md5(body), retries=0, **FAST)
    assert not (tmp_path / "f.bin").exists()
    assert (tmp_path / "f.bin.part").stat().st_size == 12345
    dl.fetch(f"{server}/f.bin", tmp_path / "f.bin", size=len(body), checksum=md5(body), **FAST)
    assert (tmp_path / "f.bin").read_bytes() == body
    assert Handler.log[-1][1] == "bytes=12345-"


def test_server_ignoring_range_restarts_from_zero(tmp_path, server):
    body = b"0123456789" * 3000
    Handler.files["/f.bin"] = body
    Handler.ignore_range = True
    Handler.drop_after, Handler.drops = 7000, 1
    dl.fetch(f"{server}/f.bin", tmp_path / "f.bin", size=len(body), checksum=md5(body), **FAST)
    assert (tmp_path / "f.bin").read_bytes() == body
    assert Handler.log[1][1] == "bytes=7000-"


def test_corrupted_file_rejected_and_removed(tmp_path, server):
    body = b"x" * 5000
    Handler.files["/f.bin"] = body[:-1] + b"y"
    with pytest.raises(OpspecError, match="md5 mismatch"):
        dl.fetch(f"{server}/f.bin", tmp_path / "f.bin", checksum=md5(body), **FAST)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()
    with pytest.raises(OpspecError, match="expected 5001"):
        dl.fetch(f"{server}/f.bin", tmp_path / "f.bin", size=5001, checksum=md5(body), **FAST)
    assert not (tmp_path / "f.bin").exists()


def test_http_error_is_one_clear_message(tmp_path, server):
    with pytest.raises(OpspecError, match="HTTP 404"):
        dl.fetch(f"{server}/missing", tmp_path / "m.bin", **FAST)


def test_zenodo_archive_resolved_extracted_and_converted(tmp_path, server, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for split, n in (("train", 5), ("test", 2)):
            item = io.BytesIO()
            torch.save({"x": torch.rand(n, 8, 8) > 0.5, "y": torch.rand(n, 8, 8)}, item)
            info = tarfile.TarInfo(f"darcy_{split}_8.pt")
            info.size = len(item.getvalue())
            tar.addfile(info, io.BytesIO(item.getvalue()))
    archive = buf.getvalue()
    record = {"files": [{"key": "darcy_8.tgz", "size": len(archive), "checksum": md5(archive),
                         "links": {"self": f"{server}/api/records/1/files/darcy_8.tgz/content"}}]}
    Handler.files["/api/records/1"] = json.dumps(record).encode()
    Handler.files["/api/records/1/files/darcy_8.tgz/content"] = archive
    monkeypatch.setattr(sources, "ZENODO_API", f"{server}/api/records/")
    source = Source("t-nop", "unused", "darcy_8.tgz", "darcy", "pt", archive="tar", train_member="darcy_train_8.pt",
                    test_member="darcy_test_8.pt", zenodo=("1", "darcy_8.tgz"))
    out = dl.download(source, tmp_path / "ds", **FAST)
    with CanonicalFile(out) as f:
        assert (f.n_samples("train"), f.n_samples("test")) == (5, 2)


def test_registry_entries_are_well_formed():
    assert {"neuralop-darcy-16", "neuralop-nsforcing-128", "pdebench-burgers1d-nu0.001", "pdebench-darcy2d-beta1.0"} <= set(SOURCES)
    for name, s in SOURCES.items():
        assert s.name == name and s.url.startswith("https://") and s.filename and s.problem and s.origin
        assert s.fmt in ("mat5", "mat73", "pdebench", "pt")
        if s.checksum is not None:
            algorithm, _, digest = s.checksum.partition(":")
            assert (algorithm, len(digest)) in (("md5", 32), ("sha256", 64)) and int(digest, 16) >= 0
        else:
            assert s.zenodo is not None and "Zenodo" in s.note
        if s.size is None:
            assert "size" in s.note
        if s.archive is not None:
            assert s.archive in ("tar", "zip") and s.train_member and s.test_member


def test_list_and_parsers(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    dl.add_download_parsers(parser.add_subparsers(dest="command"))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "darcy_16.tgz.part").write_bytes(b"x" * 2000)
    args = parser.parse_args(["list", "--dest", str(tmp_path)])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(SOURCES)
    assert any(line.startswith("neuralop-darcy-16 ") and "partial (2.0 KB)" in line for line in lines)
    with pytest.raises(OpspecError, match="not in the registry"):
        dl.run_download(parser.parse_args(["download", "nope", "--dest", str(tmp_path)]))


def test_a_raw_file_under_its_final_name_is_verified_not_trusted(tmp_path, server):
    body, nu = pdebench_darcy_bytes(tmp_path)
    Handler.files["/darcy.hdf5"] = body
    source = Source("t-darcy", f"{server}/darcy.hdf5", "darcy.hdf5", "darcy", "pdebench", checksum=md5(body))
    raw = tmp_path / "ds" / "raw" / "darcy.hdf5"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(body[:-1] + b"!")  # right name, wrong bytes (e.g. copied in by hand, or a stray file)
    with pytest.raises(OpspecError, match=r"darcy\.hdf5: md5 mismatch .*; delete it to download again"):
        dl.download(source, tmp_path / "ds", **FAST)
    assert raw.read_bytes() == body[:-1] + b"!"  # the user's file is left alone
    assert not (tmp_path / "ds" / "t-darcy.h5").exists() and Handler.log == []
    raw.write_bytes(body)  # the right bytes are used as they are, without a request
    out = dl.download(source, tmp_path / "ds", **FAST)
    with CanonicalFile(out) as f:
        np.testing.assert_allclose(f.read("train", "a"), nu[:9])
    assert Handler.log == []


def test_a_failed_download_names_a_part_file_only_when_one_exists(tmp_path, server, monkeypatch):
    def refused(*args, **kwargs):
        raise dl.urllib.error.URLError("connection refused (test)")

    monkeypatch.setattr(dl, "_request", refused)
    with pytest.raises(OpspecError) as err:
        dl.fetch(f"{server}/f.bin", tmp_path / "f.bin", retries=1, **FAST)
    assert "nothing was saved, run again" in str(err.value) and ".part" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_zenodo_checksum_is_kept_beside_the_raw_file(tmp_path, server, monkeypatch):
    """The checksum Zenodo gave is stored with the verified archive, so a rerun verifies it without the network."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for split, n in (("train", 4), ("test", 2)):
            item = io.BytesIO()
            torch.save({"x": torch.rand(n, 8, 8), "y": torch.rand(n, 8, 8)}, item)
            info = tarfile.TarInfo(f"d_{split}_8.pt")
            info.size = len(item.getvalue())
            tar.addfile(info, io.BytesIO(item.getvalue()))
    archive = buf.getvalue()
    record = {"files": [{"key": "d_8.tgz", "size": len(archive), "checksum": md5(archive),
                         "links": {"self": f"{server}/api/records/2/files/d_8.tgz/content"}}]}
    Handler.files["/api/records/2"] = json.dumps(record).encode()
    Handler.files["/api/records/2/files/d_8.tgz/content"] = archive
    monkeypatch.setattr(sources, "ZENODO_API", f"{server}/api/records/")
    source = Source("t-z", "unused", "d_8.tgz", "darcy", "pt", archive="tar", train_member="d_train_8.pt",
                    test_member="d_test_8.pt", zenodo=("2", "d_8.tgz"))
    out = dl.download(source, tmp_path / "ds", **FAST)
    assert (tmp_path / "ds" / "raw" / "d_8.tgz.checksum").read_text().strip() == md5(archive)
    requests = len(Handler.log)
    out.unlink()
    assert dl.download(source, tmp_path / "ds", **FAST) == out and len(Handler.log) == requests
    (tmp_path / "ds" / "raw" / "d_8.tgz").write_bytes(archive[:-1] + bytes([archive[-1] ^ 1]))
    out.unlink()
    with pytest.raises(OpspecError, match="md5 mismatch"):
        dl.download(source, tmp_path / "ds", **FAST)


def test_extraction_removes_folders_left_by_a_killed_extraction(tmp_path):
    import subprocess
    import sys

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("inner/a.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    archive = tmp_path / "a.tar"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "a.tar.d"
    killed = subprocess.run(
        [sys.executable, "-c", "import os, signal, sys, tempfile\nfrom opspec.core.fileio import temp_prefix\n"
         "t = tempfile.mkdtemp(prefix=temp_prefix(sys.argv[1]), suffix='.tmp', dir=os.path.dirname(sys.argv[1]))\n"
         "open(os.path.join(t, 'half'), 'w').write('x')\nos.kill(os.getpid(), signal.SIGKILL)", str(dest)])
    assert killed.returncode == -9 and len(list(tmp_path.glob(".a.tar.d.*.tmp"))) == 1
    assert dl.extract(archive, "tar", dest) == dest
    assert (dest / "inner" / "a.txt").read_bytes() == b"abc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "a.tar.d"]


def test_a_full_disk_while_downloading_is_one_line_and_keeps_the_part_file(tmp_path, server, monkeypatch):
    body = b"z" * 50000
    Handler.files["/f.bin"] = body
    real_open = open

    class FullAfter:
        """A file object whose writes fail with ENOSPC once 20000 bytes are in."""

        def __init__(self, fh):
            self.fh, self.n = fh, 0

        def write(self, block):
            if self.n + len(block) > 20000:
                self.fh.write(block[: 20000 - self.n])
                self.n = 20000
                raise OSError(28, "No space left on device")
            self.n += len(block)
            return self.fh.write(block)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(dl, "open", lambda p, mode="r": FullAfter(real_open(p, mode)) if "a" in mode or "w" in mode
                        else real_open(p, mode), raising=False)
    monkeypatch.setattr(dl, "BLOCK", 4096)
    with pytest.raises(OpspecError, match=r"f\.bin\.part: cannot write \(No space left on device\); 20000 bytes kept"):
        dl.fetch(f"{server}/f.bin", tmp_path / "f.bin", size=len(body), checksum=md5(body), **FAST)
    assert len(Handler.log) == 1 and (tmp_path / "f.bin.part").stat().st_size == 20000
    monkeypatch.undo()
    assert dl.fetch(f"{server}/f.bin", tmp_path / "f.bin", size=len(body), checksum=md5(body), **FAST).read_bytes() == body
