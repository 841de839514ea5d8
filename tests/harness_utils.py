"""Helpers shared by the harness tests (CLI runs and .keras file contents)."""

import io
import zipfile

import h5py

from train import __main__ as cli


def run_cli(argv, capsys):
    """Run `python -m train` in-process: (exit status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def keras_file_arrays(path):
    """Every array stored in a .keras file (weights and optimizer variables), by name."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
            f.visititems(
                lambda name, obj: arrays.__setitem__(name, obj[()])
                if isinstance(obj, h5py.Dataset)
                else None
            )
    return arrays
