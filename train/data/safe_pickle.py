"""Unpickle CIFAR-10's python batches without ever running code a tampered file names."""

from __future__ import annotations

import pathlib
import pickle


class UnsafePickleError(ValueError):
    """A pickle asked for something a CIFAR-10 batch never contains (refused, not run)."""


class CifarUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that only rebuilds what CIFAR-10's python batches hold.

    A pickle can name any importable callable and have it called (``os.system``,
    ``subprocess.Popen``, ...). A CIFAR-10 batch is a dict of bytes, lists of ints and
    one uint8 numpy array, so the only globals it may name are numpy's array
    reconstruction (``_reconstruct``, ``ndarray``, ``dtype``) and, for pickles written
    by Python 3 with protocol 2, ``_codecs.encode`` (how bytes are pickled there).
    Anything else is refused before it is imported or called.
    """

    ALLOWED = frozenset(
        {
            # The official files were written by Python 2 and name numpy.core;
            # NumPy 2 writes numpy._core.
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise UnsafePickleError(
                f"refusing to unpickle {module}.{name}: a CIFAR-10 batch holds only "
                "numpy arrays, lists, bytes and ints (is this file really CIFAR-10?)"
            )
        return super().find_class(module, name)


def load_cifar_batch(file: pathlib.Path):
    """The object pickled in ``file``, rebuilt by `CifarUnpickler` (never arbitrary code).

    Raises:
      UnsafePickleError: the pickle names a global a CIFAR-10 batch never holds; the
        message starts with the file name.
      ValueError: the file is not a pickle (or is truncated).
    """
    with open(file, "rb") as f:
        try:
            return CifarUnpickler(f, encoding="bytes").load()
        except UnsafePickleError as e:
            raise UnsafePickleError(f"{file}: {e}") from None
        except (
            pickle.UnpicklingError,
            EOFError,
            AttributeError,
            ImportError,
            IndexError,
            TypeError,
        ) as e:
            raise ValueError(
                f"{file}: not a CIFAR-10 python batch ({type(e).__name__}: {e})"
            ) from None
