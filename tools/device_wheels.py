"""Download, as wheels, opspec's Python dependencies that a GPU machine's image lacks, so that
tools/device_check.py runs there in one call.

Run here (where pip reaches PyPI), in the repository root, with opspec's venv active:

    echo /.whl/ >> .git/info/exclude
    python -m tools.device_wheels --dest .whl

It walks the requirements of pyproject's dependencies as installed in this venv (the same
versions), leaves out torch and every package the machine's image already holds (--have, by
default the image's list as recorded in this file), and fetches each of the rest for CPython 3.12
on manylinux x86-64 (`pip download --no-deps`), building a wheel here for the few published as
source only (pure Python). Then, on the device machine, with `.whl` carried:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
      PYTHONPATH=/tmp/site:$PWD python3 -m tools.device_check --out $OUT/device_check.md
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# The nvidia-h200 image's Python packages (docs of the device tool, read 2026-11-17), normalized names.
IMAGE_HAS = set("""absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro onnx onnx-ir onnxruntime
onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning
pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq
torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3
uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp""".split())
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "manylinux_2_24_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64"]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_dependencies() -> list[str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    return [Requirement(s).name for s in re.findall(r'"([^"]+)"', block)]


def closure(roots: list[str], skip: set[str]) -> dict[str, str]:
    """{name: installed version} of every package the roots need (markers evaluated for Python 3.12
    on Linux, no extras), not descending into the skipped ones."""
    env = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "extra": ""}
    found: dict[str, str] = {}
    todo = [normalize(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in found or name in skip:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"error: {name} is needed but not installed in this venv") from None
        found[name] = dist.version
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(normalize(req.name))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=".whl")
    parser.add_argument("--have", help="a file of package names the machine already holds (default: the list in this file)")
    parser.add_argument("--list", action="store_true", help="only print what would be fetched")
    args = parser.parse_args()
    have = {normalize(n) for n in Path(args.have).read_text().split()} if args.have else {normalize(n) for n in IMAGE_HAS}
    need = closure([d for d in project_dependencies() if normalize(d) != "torch"], have | {"torch"})
    for name, version in sorted(need.items()):
        print(f"{name}=={version}")
    if args.list:
        return 0
    dest = Path(args.dest)
    dest.mkdir(exist_ok=True)
    for name, version in sorted(need.items()):
        base = [sys.executable, "-m", "pip", "-q"]
        binary = [*base, "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                  *[x for p in PLATFORMS for x in ("--platform", p)], "-d", str(dest), f"{name}=={version}"]
        if subprocess.run(binary).returncode != 0:  # published as a source distribution only: build a (pure) wheel here
            subprocess.run([*base, "wheel", "--no-deps", "-w", str(dest), f"{name}=={version}"], check=True)
    print(f"{len(need)} packages in {dest}: {sum(p.stat().st_size for p in dest.glob('*.whl')) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
