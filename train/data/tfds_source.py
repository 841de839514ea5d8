"""Open a TFDS dataset that is already prepared on disk; never download one."""

from __future__ import annotations

import os

import tensorflow as tf

from train.data.source import DataNotFoundError, Source, expand_path, missing


def tfds_source(
    name: str,
    tfds_name: str,
    data_dir,
    *,
    how: str,
    eval_split: str = "test",
    encoded_images: bool = False,
    seed: int = 0,
) -> Source:
    """TFDS ``tfds_name`` from ``data_dir`` as a `Source`, or `DataNotFoundError` at once.

    ``tfds.load`` would try to download (and, offline, retries for minutes). Instead the
    builder is made, asked ``is_prepared()`` (a local file check, ~1 ms), and only then
    ``as_dataset`` is called. Without the ``tensorflow-datasets`` package the error is
    the same kind, saying so.

    Args:
      name: the harness's name for the dataset (used in messages).
      tfds_name: the TFDS builder name (``"imagenet2012"``, ...).
      data_dir: where the dataset is prepared; ``None``: TFDS's default
        (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      how: how to obtain the data, for the error message.
      eval_split: the split that serves as the test set.
      encoded_images: leave images encoded (decoded per example later), shuffle the
        shard order, and do not mark the data for in-memory caching (ImageNet).
      seed: TFDS' ``shuffle_seed`` for the shard order.
    """
    try:
        import tensorflow_datasets as tfds  # lazily: heavy, and not needed for local files
    except ImportError:
        where = data_dir if data_dir is not None else "TFDS's default data_dir"
        raise DataNotFoundError(
            f"dataset {name!r}: reading the prepared TFDS dataset {tfds_name!r} in {where} "
            "needs the tensorflow-datasets package, which is not installed (pip install "
            f"tensorflow-datasets). How to get the data: {how}"
        ) from None

    if data_dir is not None:
        data_dir = os.fspath(expand_path(data_dir))
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
        where = f"TFDS dir {builder.data_dir}"
        if data_dir is None:
            where += " (the TFDS default data_dir: $TFDS_DATA_DIR or ~/tensorflow_datasets)"
        root = expand_path(data_dir) / tfds_name if data_dir else None
        if root is not None and root.is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir())
            if found:
                where += (
                    f"; found version(s) {found} of {tfds_name!r} but this "
                    f"tensorflow-datasets expects {builder.version}"
                )
        raise missing(name, where, how)

    read_config = tfds.ReadConfig(shuffle_seed=seed)
    decoders = {"image": tfds.decode.SkipDecoding()} if encoded_images else None

    def open_split(split: str, shuffle_files: bool) -> tf.data.Dataset:
        ds = builder.as_dataset(
            split=split,
            as_supervised=True,
            shuffle_files=shuffle_files,
            decoders=decoders,
            read_config=read_config,
        )
        return ds.map(lambda x, y: (x, tf.cast(y, tf.int32)), num_parallel_calls=tf.data.AUTOTUNE)

    def split_size(split: str, ds: tf.data.Dataset) -> int:
        splits = builder.info.splits
        if split in splits:
            return int(splits[split].num_examples)
        return int(ds.cardinality())  # metadata without split info (e.g. mocked data)

    # Shuffling the shard order only matters for sharded, non-cached data (ImageNet);
    # the small sets are cached and fully shuffled in memory.
    train = open_split("train", shuffle_files=encoded_images)
    test = open_split(eval_split, shuffle_files=False)
    return Source(
        train=train,
        test=test,
        train_size=split_size("train", train),
        test_size=split_size(eval_split, test),
        in_memory=not encoded_images,
        origin=f"tfds:{builder.data_dir}",
    )
