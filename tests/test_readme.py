"""The README's (and docs/saving.md's) Python snippets and nero_tf's docstring examples run as printed.

Every ```python block of README.md and docs/saving.md is a complete program: it is written to a
file and run in a fresh Python process (Keras fixes its backend, mixed-precision
policy and logical devices once per process), with an empty temporary directory
as working directory and only the repository on PYTHONPATH, as a user who
copied it would run it from a checkout. ```bash blocks are not run.

Docstring examples (``>>>`` lines) in nero_tf run as doctests with ``keras``,
``numpy as np`` and ``nero_tf`` imported, unless they are fragments: an example
that leaves an argument to the reader as ``...`` (``loss=...``) is a fragment
and is only checked to be one.
"""

import doctest
import importlib
import os
import pathlib
import pkgutil
import re
import subprocess
import sys
import textwrap

import pytest

import nero_tf

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# The documents whose snippets are programs: the README and the recipes it links to.
DOCUMENTS = [README, ROOT / "docs" / "saving.md"]
# Generous: each snippet imports TensorFlow in a new process on a loaded machine.
TIMEOUT_S = 300


def readme_snippets():
    """`("file:first line number", code)` of each ```python block of the documents."""
    snippets = []
    for path in DOCUMENTS:
        text = path.read_text()
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S):
            line = text.count("\n", 0, match.start()) + 2  # the block's first code line
            snippets.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return snippets


SNIPPETS = readme_snippets()


def _run(code, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERAS_BACKEND="tensorflow",
               TF_CPP_MIN_LOG_LEVEL="3")
    script = cwd / "snippet.py"
    script.write_text(code)
    try:
        return subprocess.run([sys.executable, str(script)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish in {TIMEOUT_S} s:\n{code}")


# The recipes the README promises; each must be in a snippet that runs.
RECIPES = [
    "nero_tf.Nero()", "model.fit(", ".summary()", "nero_tf.model_layouts(",
    "unconstrained=", "keras.saving.load_model(", "tf.saved_model.save(",
    ".build(fresh.trainable_variables)", "tf.train.Checkpoint(",
    'set_global_policy("mixed_float16")', "nero_tf.summary(", "MirroredStrategy(",
]


def test_the_readme_has_the_snippets_this_file_runs():
    # Without ```python blocks (or with a misspelt fence) the test below would
    # pass vacuously, and a recipe could quietly move out of the tested code.
    code = "\n".join(code for _, code in SNIPPETS)
    assert [recipe for recipe in RECIPES if recipe not in code] == []
    for path in DOCUMENTS:
        fences = re.findall(r"^```(\w*)$", path.read_text(), re.M)
        openings = fences[0::2]
        assert set(openings) <= {"python", "bash", "text"}, (path, openings)


@pytest.mark.slow
@pytest.mark.parametrize(
    "where, code", SNIPPETS, ids=[where for where, _ in SNIPPETS]
)
def test_readme_snippet_runs_as_printed(where, code, tmp_path):
    done = _run(code, tmp_path)
    assert done.returncode == 0, (
        f"{where}: the snippet exited {done.returncode}\n"
        f"--- snippet ---\n{code}--- stderr (end) ---\n{done.stderr[-4000:]}"
    )


def docstring_examples():
    """`(module name, test name, doctest)` of each docstring with examples in nero_tf."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    names = ["nero_tf"] + [
        info.name for info in pkgutil.iter_modules(nero_tf.__path__, "nero_tf.")
    ]
    found = []
    for module_name in names:
        for test in finder.find(importlib.import_module(module_name)):
            if test.examples:  # the finder keeps objects defined in that module
                found.append((module_name, test.name, test))
    return sorted(found, key=lambda item: item[1])


def is_fragment(test):
    """Whether an example leaves an argument to the reader: `f(x, loss=...)`."""
    return any(re.search(r"=\s*\.\.\.\s*[,)]", e.source) for e in test.examples)


DOCTESTS = docstring_examples()
PROGRAMS = [(module, name) for module, name, test in DOCTESTS if not is_fragment(test)]


def test_docstring_examples_are_found_and_not_all_fragments():
    # Every example that is not visibly a fragment runs below; an empty list
    # would mean the finder, not the docstrings, changed.
    assert DOCTESTS, "nero_tf has docstring examples; none were found"
    fragments = [name for _, name, test in DOCTESTS if is_fragment(test)]
    assert PROGRAMS, f"only fragments: {fragments}"


@pytest.mark.slow
@pytest.mark.parametrize("module, name", PROGRAMS, ids=[name for _, name in PROGRAMS])
def test_docstring_example_runs(module, name, tmp_path):
    # In a fresh process: layer names such as `sequential` in the expected
    # output depend on what else the process has built.
    code = textwrap.dedent(f"""\
        import doctest, importlib, sys
        import keras, numpy as np
        import nero_tf
        module = importlib.import_module({module!r})
        globs = {{"keras": keras, "np": np, "nero_tf": nero_tf}}
        tests = [t for t in doctest.DocTestFinder().find(module, globs=globs)
                 if t.name == {name!r}]
        assert len(tests) == 1, [t.name for t in tests]
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        runner.run(tests[0], out=sys.stderr.write)
        sys.exit(1 if runner.failures else 0)
        """)
    done = _run(code, tmp_path)
    assert done.returncode == 0, f"{name}:\n{done.stderr[-4000:]}"
