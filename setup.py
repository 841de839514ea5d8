"""nero_tf: the Nero optimiser (Liu, Bernstein, Meister, Yue, ICML 2021) for Keras 3."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "nero_tf" / "__init__.py").read_text()
).group(1)

# The library itself only needs Keras 3 and a backend. TensorFlow is the backend
# this project is built and tested on; pick the wheel that fits your machine:
#   CPU only (CI):  pip install -e ".[tf-cpu]"
#   NVIDIA GPU:     pip install -e ".[tf-gpu]"   (tensorflow[and-cuda])
TF_VERSION = "tensorflow{extra}>=2.21,<2.22"
TRAIN = [
    "tensorflow-datasets>=4.9",
    "importlib_resources",  # tfds 4.9.10 imports it without declaring it
    "scikit-learn>=1.3",  # ships the 8x8 digits used offline by the quickstart
    "pyyaml>=6",
    "matplotlib>=3.7",
    "tensorboard",  # keras.callbacks.TensorBoard; tensorflow-cpu does not bring it
    "scipy>=1.11",  # train/fid.py: the matrix square root of the Frechet distance
    "sacrebleu>=2.4",  # train/tasks.py: corpus BLEU, the implementation everyone reports
    "gymnasium>=1.1,<2",  # train/envs.py, train/ppo.py, train/rl.py: PPO's environments (1.1 added the SAME_STEP autoreset mode)
    "ale-py>=0.9",  # train/envs.py: the Atari emulator; its wheel bundles the game ROMs
    "opencv-python-headless",  # gymnasium's AtariPreprocessing resizes frames with cv2
]
TEST = ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6"]

setup(
    name="nero_tf",
    version=VERSION,
    description="Nero: per-neuron projected gradient descent for Keras 3 / TensorFlow",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # Only the library is installed. models/, train/ and bench/ are folders of
    # the repository, run from its root (`python -m train`), so that no generic
    # top-level `models` or `train` lands in site-packages.
    packages=find_packages(include=["nero_tf", "nero_tf.*"]),
    install_requires=["keras>=3.15,<3.16", "numpy>=1.26"],
    extras_require={
        "tf-cpu": [TF_VERSION.format(extra="-cpu")],
        "tf-gpu": [TF_VERSION.format(extra="[and-cuda]")],
        "tf": [TF_VERSION.format(extra="")],
        "jax": ["jax>=0.4.30"],
        # Bench only: the authors' Nero in PyTorch beside ours
        # (`python -m bench.optimizer_step --optimizers nero,torch_nero`).
        # Nothing in nero_tf, models/ or train/ needs it; the tests that do
        # skip without it (CI does not install it). The default Linux wheel
        # pulls in CUDA libraries; for the CPU-only wheel:
        #   pip install torch --index-url https://download.pytorch.org/whl/cpu
        "bench-torch": ["torch>=2.2"],
        "train": TRAIN,
        # CI and the README's test command: CPU TensorFlow, JAX for the
        # backend-agnostic optimiser tests, and everything the harness needs.
        "test": TEST + TRAIN + [TF_VERSION.format(extra="-cpu"), "jax>=0.4.30"],
    },
    license="MIT",
)
