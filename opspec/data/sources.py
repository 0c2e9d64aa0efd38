"""Known public datasets: where each file lives, how to verify it, and how to turn it into a canonical file.

Every URL, record id, file name and checksum below is copied from the projects' own public loaders;
nothing is guessed. Where a project does not publish a value in its code it is None, with the reason.

- neuraloperator (github.com/neuraloperator/neuraloperator, neuralop/data/datasets/darcy.py and
  navier_stokes.py): Darcy is Zenodo record 12784353 with files `darcy_{16,32,64,128,421}.tgz`,
  Navier–Stokes is record 12825163 with `nsforcing_{128,1024}.tgz`; each archive holds
  `<name>_train_<res>.pt` and `<name>_test_<res>.pt`. The loader (neuralop/data/datasets/web_utils.py,
  `download_from_zenodo_record`) takes size and md5 from Zenodo's records API at download time
  (`files[].size`, `files[].checksum` = "md5:…"), so the code holds no checksum: these entries store
  None and `download` asks the same API. (Older neuraloperator versions used records 10994262 and 11043303.)
- PDEBench (github.com/pdebench/PDEBench, pdebench/data_download/pdebench_data_urls.csv): DaRUS URL and
  md5 per file. The CSV has no sizes, so size is None (the server's Content-Length is used for progress).
"""

from __future__ import annotations

from dataclasses import dataclass

ZENODO_API = "https://zenodo.org/api/records/"
NEURALOP_ORIGIN = "neuraloperator: neuralop/data/datasets/{}.py + web_utils.py (md5/size from the Zenodo API)"
PDEBENCH_ORIGIN = "PDEBench: pdebench/data_download/pdebench_data_urls.csv"


@dataclass(frozen=True)
class Source:
    """One downloadable file and what to do with it.

    `checksum` is "md5:<hex>" or "sha256:<hex>" as the source publishes it; None means it is resolved at
    download time (`zenodo` = (record id, file key)) or, with no resolver, that the file cannot be verified.
    `train_member` / `test_member` name the files inside an archive; `split` is passed to convert.
    """

    name: str
    url: str
    filename: str
    problem: str
    fmt: str
    size: int | None = None
    checksum: str | None = None
    archive: str | None = None
    train_member: str | None = None
    test_member: str | None = None
    split: str | float | int | None = None
    zenodo: tuple[str, str] | None = None
    origin: str = ""
    note: str = ""


def _neuralop(dataset: str, module: str, record: str, problem: str, res: int) -> Source:
    key = f"{dataset}_{res}.tgz"
    return Source(
        name=f"neuralop-{dataset}-{res}",
        url=f"https://zenodo.org/records/{record}/files/{key}",
        filename=key,
        problem=problem,
        fmt="pt",
        archive="tar",
        train_member=f"{dataset}_train_{res}.pt",
        test_member=f"{dataset}_test_{res}.pt",
        zenodo=(record, key),
        origin=NEURALOP_ORIGIN.format(module),
        note="size and md5 not in neuraloperator's code: taken from Zenodo's records API at download time",
    )


def _pdebench(name: str, filename: str, datafile: str, md5: str, problem: str) -> Source:
    return Source(
        name=name,
        url=f"https://darus.uni-stuttgart.de/api/access/datafile/{datafile}",
        filename=filename,
        problem=problem,
        fmt="pdebench",
        checksum=f"md5:{md5}",
        origin=PDEBENCH_ORIGIN,
        note="size not published in PDEBench's CSV (None)",
    )


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        *(_neuralop("darcy", "darcy", "12784353", "darcy", r) for r in (16, 32, 64, 128, 421)),
        *(_neuralop("nsforcing", "navier_stokes", "12825163", "navier_stokes", r) for r in (128, 1024)),
        _pdebench("pdebench-burgers1d-nu0.001", "1D_Burgers_Sols_Nu0.001.hdf5", "268190", "44cb784d5a07aa2b1c864cabdcf625f9", "burgers"),
        _pdebench("pdebench-burgers1d-nu0.01", "1D_Burgers_Sols_Nu0.01.hdf5", "281363", "e6d9a4f62baf9a29121a816b919e2770", "burgers"),
        _pdebench("pdebench-burgers1d-nu0.1", "1D_Burgers_Sols_Nu0.1.hdf5", "268185", "660ba1008d3843bf4e28d2895eb607ce", "burgers"),
        _pdebench("pdebench-darcy2d-beta0.1", "2D_DarcyFlow_beta0.1_Train.hdf5", "133218", "294f9a03a4aa16b0e386469ca8b471be", "darcy"),
        _pdebench("pdebench-darcy2d-beta1.0", "2D_DarcyFlow_beta1.0_Train.hdf5", "133219", "81694ed31306ff2e5f6b76349b0b4389", "darcy"),
        _pdebench("pdebench-darcy2d-beta10.0", "2D_DarcyFlow_beta10.0_Train.hdf5", "133220", "a7f23cf8011fc211b180828af39b7d1a", "darcy"),
    ]
}
