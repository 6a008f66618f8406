"""crnn_tf: hybrid DNN-HMM speech recognition with convolutional LSTM acoustic models."""
import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def _requirements(name):
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# Console scripts are thin absl-flags wrappers in tools/; each maps to tools/<module>.py:main.
CONSOLE_SCRIPTS = {
    "crnn-make-corpus": "tools.make_corpus:run",
    "crnn-prepare-data": "tools.prepare_data:run",
    "crnn-prepare-fsdd": "tools.prepare_fsdd:run",
    "crnn-align": "tools.align:run",
    "crnn-train": "tools.train:run",
    "crnn-export": "tools.export:run",
    "crnn-decode": "tools.decode:run",
    "crnn-serve": "serving.server:run",
    "crnn-recognize": "serving.recognize:run",
    "crnn-recipe": "tools.recipe:run",
}

setup(
    name="crnn_tf",
    version="0.1.0",
    description="TensorFlow/Keras hybrid DNN-HMM ASR with LSTM-based convolutional recurrent acoustic models",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["crnn_tf", "crnn_tf.*", "tools", "serving", "serving.*"]),
    install_requires=_requirements("base.in"),
    extras_require={"test": _requirements("test.in")},
    entry_points={
        "console_scripts": [f"{name}={target}" for name, target in CONSOLE_SCRIPTS.items()],
    },
)
