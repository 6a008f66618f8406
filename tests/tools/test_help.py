"""Every console script: plain `--help` shows the tool's usage and its own flags; a bad flag is a usage error."""
import ast
import concurrent.futures
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _console_scripts():
    """setup.py's CONSOLE_SCRIPTS, read without running setup()."""
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "CONSOLE_SCRIPTS")
    return ast.literal_eval(node.value)


CONSOLE_SCRIPTS = _console_scripts()

# Shared groups (tools/common_flags.py), each represented by flags every adopter must list.
DECODER = ("--graph_dir", "--acoustic_scale", "--max_active")
FEATURES = ("--feature_config", "--sample_rate", "--cmvn", "--low_freq", "--[no]norm_vars")
AUGMENT = ("--augment_speed_factors", "--augment_time_masks")
# Flags each tool must list among its own (not only in --helpfull): one of its own, and those of the groups it uses.
KEY_FLAGS = {
    "crnn-make-corpus": ("--num_utterances",), "crnn-prepare-data": ("--data_dir", *FEATURES),
    "crnn-prepare-fsdd": ("--test_speakers",), "crnn-align": ("--init",),
    "crnn-train": ("--model_spec", "--lr_initial", "--dropout", *AUGMENT), "crnn-export": ("--export_base",),
    "crnn-decode": ("--scores", *DECODER), "crnn-serve": ("--model_base_path", *DECODER),
    "crnn-recognize": ("--server", *DECODER), "crnn-recipe": ("--fsdd", "--dropout", *FEATURES, *AUGMENT),
}
BIN = os.path.dirname(sys.executable)


def _run(args):
    return subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.fixture(scope="module")
def helps():
    scripts = sorted(CONSOLE_SCRIPTS)
    missing = [s for s in scripts if not os.path.exists(os.path.join(BIN, s))]
    if missing:
        pytest.skip(f"console scripts not installed beside {sys.executable}: {missing} (make install)")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return dict(zip(scripts, pool.map(lambda s: _run([os.path.join(BIN, s), "--help"]), scripts)))


def test_every_console_script_is_checked():
    assert sorted(KEY_FLAGS) == sorted(CONSOLE_SCRIPTS)


@pytest.mark.parametrize("script", sorted(KEY_FLAGS))
def test_help_lists_the_tools_own_flags(helps, script):
    done = helps[script]
    assert done.returncode == 1, done.stderr[-2000:]  # absl's --help exits 1 after printing the usage
    module = CONSOLE_SCRIPTS[script].split(":")[0]
    doc = ast.get_docstring(ast.parse(open(os.path.join(ROOT, *module.split(".")) + ".py").read()))
    assert done.stdout.lstrip().splitlines()[0] == doc.splitlines()[0]  # the tool's docstring is the usage
    listed = re.findall(r"^  (--[^:\s]+):", done.stdout, flags=re.M)  # absl's "  --name: help" lines
    assert set(KEY_FLAGS[script]) <= set(listed), sorted(set(KEY_FLAGS[script]) - set(listed))
    assert len(listed) == len(set(listed))
    assert "--tf_" not in done.stdout and "--helpfull" in done.stdout  # TF's flags stay in --helpfull


@pytest.fixture(scope="module")
def bad_flags(helps):
    scripts = sorted(CONSOLE_SCRIPTS)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return dict(zip(scripts, pool.map(lambda s: _run([os.path.join(BIN, s), "--no_such_flag=1"]), scripts)))


@pytest.mark.parametrize("script", sorted(KEY_FLAGS))
def test_a_bad_flag_is_a_usage_error_naming_it(bad_flags, script):
    done = bad_flags[script]
    assert done.returncode == 1 and "Unknown command line flag 'no_such_flag'" in done.stderr, done.stderr[-500:]
    assert "Traceback" not in done.stderr


def test_importing_every_tool_in_one_process_defines_no_flags():
    """Tools define their flags when they run: importing several (a test, a notebook) neither defines flags nor
    raises DuplicateFlagError on the names they share (--model_name, --sample_rate, --graph_dir, …)."""
    modules = sorted({target.split(":")[0] for target in CONSOLE_SCRIPTS.values()} | {"tools.train_keras_fit"})
    code = ("import importlib, sys; from absl import flags\n"
            "for name in sys.argv[1:]: importlib.import_module(name)\n"
            "print(sorted(m for m in flags.FLAGS.flags_by_module_dict() if m.split('.')[0] in ('tools', 'serving')))")
    done = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_bad_value_names_the_problem():
    done = _run([os.path.join(BIN, "crnn-prepare-fsdd"), "--fsdd_dir=/nowhere", "--output_dir=/tmp/x",
                 "--test_speakers=a"])
    assert done.returncode == 1 and "FSDD directory '/nowhere' does not exist" in done.stderr


@pytest.mark.parametrize("module, args", [
    ("tools.train", ["--dropout=nan", "--model_spec=ReLU8", "--train_data=x", "--model_dir=y"]),
    ("tools.recipe", ["--dropout=1", "--work_dir=/nonexistent/never_written"]),
    ("tools.train_keras_fit", ["--dropout=-0.1", "--train_data=x", "--output=/nonexistent/never_written.keras"]),
])
def test_a_bad_dropout_rate_stops_the_tool_naming_the_flag(module, args):
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 1, done.stderr[-2000:]
    assert "flag --dropout=" in done.stderr and "dropout must be in [0, 1)" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("module, args", [
    ("tools.train", ["--label_smoothing=1", "--model_spec=ReLU8", "--train_data=x", "--model_dir=y"]),
    ("tools.recipe", ["--label_smoothing=-0.5", "--work_dir=/nonexistent/never_written"]),
])
def test_a_bad_label_smoothing_stops_the_tool_naming_the_flag(module, args):
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 1, done.stderr[-2000:]
    assert "flag --label_smoothing=" in done.stderr and "label_smoothing must be in [0, 1)" in done.stderr, \
        done.stderr[-2000:]


def test_bad_augmentation_flags_stop_the_tool_at_parse_time():
    # One tool is enough: every tool with --augment_* flags gets them, and their check, from define_augment_flags.
    done = subprocess.run([sys.executable, "-m", "tools.train", "--augment_silence_trim_min_db=30",
                           "--augment_silence_trim_max_db=10", "--model_spec=ReLU8", "--train_data=x",
                           "--model_dir=/nonexistent/never_written"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Flags parsing error" in done.stderr, done.stderr[-2000:]
    assert "--augment_*: need 0 < silence_trim_min_db ≤ silence_trim_max_db, got 30.0, 10.0" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("values, message", [
    ({"augment_noise_colours": ["white", "purple"]},
     "noise colours ('white', 'purple'): choose from ['white', 'pink', 'brown', 'babble', 'recorded']"),
    ({"augment_speed_factors": ["0.9", "fast"]}, "could not convert string to float: 'fast'"),
], ids=["unknown_noise_colour", "factor_not_a_number"])
def test_augmentation_flag_values_are_checked_as_one_config(values, message):
    from crnn_tf.data.augment import AugmentConfig
    from tools import common_flags

    defaults = {name: getattr(AugmentConfig(), name.removeprefix(common_flags.AUGMENT_PREFIX))
                for name in common_flags._augment_flag_names()}
    assert common_flags._augment_config(defaults) == AugmentConfig()
    with pytest.raises(ValueError, match=re.escape(message)):
        common_flags._augment_config({**defaults, **values})
