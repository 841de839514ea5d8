"""Every private Keras and TensorFlow API that nero_tf and its harness use, in one place.

Keras 3 and TensorFlow have no public equivalent for what is here. Each use is a
small function with the public behaviour we rely on, and `tests/test_internals.py`
checks each one against the installed versions, so that a Keras or TensorFlow
release that moves or removes one fails that test by name instead of changing
behaviour silently.
"""


def flatten_layers(model, include_self=True):
    """Every layer inside `model`, recursively (sub-layers of layers included).

    Public `model.layers` lists only direct children of a functional or
    Sequential model; the attention projections inside a MultiHeadAttention,
    or the layers of a subclassed layer, are reached only by Keras' private
    `_flatten_layers`.
    """
    return list(model._flatten_layers(include_self=include_self, recursive=True))


def symbolic_build(model, data_batch):
    """Create a compiled model's metric (and optimizer) variables without data.

    What `model.fit` does before its first step (`Trainer._symbolic_build`).
    Raises `RuntimeError` if this Keras has no such method.
    """
    build = getattr(model, "_symbolic_build", None)
    if build is None:
        raise RuntimeError(
            "This Keras has no Model._symbolic_build; nero_tf's harness needs it "
            "to create metric variables before restoring a backup."
        )
    build(data_batch=data_batch)
