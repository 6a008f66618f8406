"""Flag groups that several tools share, defined once here from the config dataclasses they fill."""
import dataclasses
import inspect
import re

from absl import flags

FLAGS = flags.FLAGS
AUGMENT_PREFIX = "augment_"


def field_docs(cls) -> dict[str, str]:
    """`{field: help}` from a dataclass docstring's `Args:`/`Attributes:` entries, less their closing "Default …"
    sentence (absl prints each flag's default itself, and a tool may choose another one).

    An entry is `name[, name…]: text`, continued on more deeply indented lines; `a: text. b: text` on one line is
    two entries.
    """
    entries, current = [], None
    for line in (inspect.getdoc(cls) or "").splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if re.match(r"^[a-z_0-9]+(, [a-z_0-9]+)*: ", stripped) and (current is None or indent <= current[0]):
            current = [indent, stripped]
            entries.append(current)
        elif current is not None and stripped and indent > current[0]:
            current[1] += " " + stripped
        elif not stripped:
            current = None
    docs = {}
    for _, text in entries:
        for part in re.split(r"(?<=\.) (?=[a-z_0-9]+(?:, [a-z_0-9]+)*: )", text):
            names, _, help_text = part.partition(": ")
            help_text = re.sub(r"(?<=\.) Defaults? [^:]*$", "", help_text)
            for name in names.split(", "):
                docs.setdefault(name, help_text)
    return docs


def define_dataclass_flags(cls, *, exclude=(), choices=None, required=(), defaults=None) -> list[str]:
    """One flag per field of dataclass `cls` (same name, its default, its docstring entry as help).

    Args:
      cls: a dataclass with str/int/float/bool fields.
      exclude: fields that get no flag (derived or nested settings).
      choices: `{field: allowed values}` for enum flags.
      required: fields without a default (their flag defaults to None; mark them required in `run`).
      defaults: an instance of `cls` whose values are the flags' defaults. Default: the fields' own defaults.

    Returns:
      The names of the flags defined, to build `cls(**{name: FLAGS[name].value …})` from.
    """
    docs, choices, names = field_docs(cls), choices or {}, []
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        default = None if field.name in required else getattr(defaults, field.name, field.default)
        help_text = docs.get(field.name) or f"{cls.__name__}.{field.name}"
        if field.name in choices:
            flags.DEFINE_enum(field.name, default, list(choices[field.name]), help_text)
        elif field.type is bool:
            flags.DEFINE_bool(field.name, default, help_text)
        elif field.type is int:
            flags.DEFINE_integer(field.name, default, help_text)
        elif field.type is float:
            flags.DEFINE_float(field.name, default, help_text)
        else:
            flags.DEFINE_string(field.name, default, help_text)
        names.append(field.name)
    return names


def _validator(check):
    """A flag validator from `check(value)`, whose ValueError becomes the usage error (naming the flag)."""
    def valid(value):
        try:
            check(value)
        except ValueError as error:
            raise flags.ValidationError(str(error)) from None
        return True
    return valid


def validate_dropout_flag() -> None:
    """Checks `--dropout` when the flags are parsed (`crnn_tf.models.check_dropout`), so that a bad rate stops the
    tool before any work, as a usage error naming the flag."""
    from crnn_tf.models import check_dropout

    flags.register_validator("dropout", _validator(check_dropout))


def validate_label_smoothing_flag() -> None:
    """Checks `--label_smoothing` when the flags are parsed (`crnn_tf.train.config.check_label_smoothing`)."""
    from crnn_tf.train.config import check_label_smoothing

    flags.register_validator("label_smoothing", _validator(check_label_smoothing))


def define_augment_flags(defaults=None) -> None:
    """One `--augment_<field>` flag per `AugmentConfig` field, help text from its docstring.

    Args:
      defaults: an `AugmentConfig` whose values are the flags' defaults. Default `AugmentConfig()` (all off).
    """
    from crnn_tf.data.augment import AugmentConfig

    defaults = defaults or AugmentConfig()
    docs = field_docs(AugmentConfig)
    for field in dataclasses.fields(AugmentConfig):
        name, default = AUGMENT_PREFIX + field.name, getattr(defaults, field.name)
        help_text = docs.get(field.name, "see crnn_tf.data.augment.AugmentConfig")
        if isinstance(default, tuple):
            flags.DEFINE_list(name, [str(v) for v in default], help_text)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text)
        else:
            flags.DEFINE_float(name, default, help_text)

    def valid(values):
        try:
            _augment_config(values)
        except ValueError as error:
            raise flags.ValidationError(f"--{AUGMENT_PREFIX}*: {error}") from None
        return True

    flags.register_multi_flags_validator(_augment_flag_names(), valid)


def _augment_flag_names() -> list[str]:
    """The `--augment_*` flag names, one per `AugmentConfig` field."""
    from crnn_tf.data.augment import AugmentConfig

    return [AUGMENT_PREFIX + field.name for field in dataclasses.fields(AugmentConfig)]


def _augment_config(values: dict):
    """The `AugmentConfig` of `{flag name: value}` for the `--augment_*` flags."""
    from crnn_tf.data.augment import AugmentConfig

    fields = {}
    for field in dataclasses.fields(AugmentConfig):
        value = values[AUGMENT_PREFIX + field.name]
        if field.name.endswith("_factors"):
            value = tuple(float(v) for v in value)
        elif isinstance(field.default, tuple):
            value = tuple(value)
        fields[field.name] = value
    return AugmentConfig(**fields)


def augment_from_flags():
    """The `AugmentConfig` the `--augment_*` flags describe."""
    return _augment_config({name: getattr(FLAGS, name) for name in _augment_flag_names()})


# The FeatureConfig fields a user commonly changes get a flag each; --feature_config (JSON) sets any field.
FEATURE_OPTIONS = ("sample_rate", "num_mel_bins", "low_freq", "high_freq", "dither", "cmvn", "norm_vars")


def define_feature_flags(defaults=None) -> None:
    """The feature options (`crnn_tf.features.FeatureConfig`), the same in every tool that computes features:
    `--feature_config`, a JSON file with a whole config, and one flag per `FEATURE_OPTIONS` field (help text from
    the field's docstring entry) that changes it.

    Args:
      defaults: a `FeatureConfig` whose values are the flags' defaults (the config used when neither the file nor a
        flag is given). Default `FeatureConfig()`.
    """
    from crnn_tf.features.config import CMVN_MODES, FeatureConfig

    flags.DEFINE_string("feature_config", None, "JSON file with a whole FeatureConfig (crnn_tf.features); the feature "
                        "flags given on the command line change it. Default: the feature flags' defaults.")
    define_dataclass_flags(FeatureConfig, exclude=[f.name for f in dataclasses.fields(FeatureConfig)
                                                   if f.name not in FEATURE_OPTIONS],
                           choices={"cmvn": CMVN_MODES}, defaults=defaults)


def feature_config_from_flags():
    """The `FeatureConfig` the feature flags describe: `--feature_config`'s file changed by the feature flags given
    on the command line or, without the file, the feature flags' values."""
    from absl import app

    from crnn_tf.features.config import FeatureConfig

    try:
        if FLAGS.feature_config:
            with open(FLAGS.feature_config) as f:
                base = FeatureConfig.from_json(f.read())
            return base.replace(**{name: FLAGS[name].value for name in FEATURE_OPTIONS if FLAGS[name].present})
        return FeatureConfig(**{name: FLAGS[name].value for name in FEATURE_OPTIONS})
    except (OSError, ValueError) as error:  # a missing file, bad JSON, an impossible combination
        raise app.UsageError(f"feature options: {error}") from error


DECODER_OPTIONS = ("acoustic_scale", "beam", "lattice_beam", "max_active")


def define_decoder_flags(graph_help: str) -> None:
    """The HMM decoder's flags (`crnn_tf.hmm.decoder.HybridDecoder`), the same in every tool that decodes."""
    flags.DEFINE_string("graph_dir", None, graph_help)
    flags.DEFINE_string("model", None, "Transition model (final.mdl, binary or text). Default: graph_dir/final.mdl, "
                        "else graph_dir/../final.mdl as Kaldi's decode.sh finds exp/tri1/final.mdl for exp/tri1/graph.")
    flags.DEFINE_float("acoustic_scale", 0.1, "Decoder acoustic scale (Kaldi's 1 / LM weight).")
    flags.DEFINE_float("beam", 13.0, "Decoder beam.")
    flags.DEFINE_float("lattice_beam", 8.0, "Decoder lattice beam.")
    flags.DEFINE_integer("max_active", 7000, "Decoder's most active states per frame.")


def decoder_from_flags(**options):
    """A `HybridDecoder` over `--graph_dir` with the decoder flags; `options` add e.g. prior_counts."""
    from crnn_tf.hmm.decoder import HybridDecoder

    return HybridDecoder(FLAGS.graph_dir, **{name: getattr(FLAGS, name) for name in DECODER_OPTIONS},
                         model_path=FLAGS.model, **options)


def define_triphone_flags(num_leaves: int = 500, tot_gauss: int = 2000, tri_iters: int = 20) -> None:
    """The triphone system's flags (`crnn_tf.hmm.triphone.train_triphone`), the same in crnn-align and crnn-recipe.

    Args:
      num_leaves: default of --num_leaves (500).
      tot_gauss: default of --tot_gauss (2000).
      tri_iters: default of --tri_iters (20).
    """
    flags.DEFINE_integer("num_leaves", num_leaves, "tri1: most decision-tree leaves (build-tree's <num-leaves>); "
                         "fewer when the data support no more (the reason is logged).")
    flags.DEFINE_integer("tot_gauss", tot_gauss, "tri1: Gaussians of the triphone GMM-HMM after mixture growth.")
    flags.DEFINE_float("tree_thresh", 300.0, "tri1: least likelihood gain of a tree split (build-tree --thresh).")
    flags.DEFINE_float("cluster_thresh", -1.0, "tri1: tree leaves merge while that costs less; -1: the gain of the "
                       "last split, 0: no merging (build-tree --cluster-thresh).")
    flags.DEFINE_integer("tri_iters", tri_iters, "tri1: EM iterations of the triphone GMM-HMM.")
    flags.DEFINE_bool("tree_edge_as_silence", False, "tri1: the utterance edge answers every tree question as "
                      "silence does, so recordings trimmed to the word share their edge phones' leaves with speech "
                      "after silence instead of getting leaves of their own (default: Kaldi's questions as they are; "
                      "docs/kaldi.md has where each pays).")


def triphone_configs_from_flags():
    """(TreeConfig, GmmTrainConfig) for `crnn_tf.hmm.triphone.train_triphone` from the triphone flags."""
    from crnn_tf.hmm import triphone

    tree = triphone.TreeConfig(num_leaves=FLAGS.num_leaves, thresh=FLAGS.tree_thresh,
                               cluster_thresh=FLAGS.cluster_thresh, edge_as_silence=FLAGS.tree_edge_as_silence)
    return tree, triphone.triphone_gmm_config(FLAGS.tot_gauss, FLAGS.tri_iters)


def run_tool(main, module_name: str) -> None:
    """`app.run(main)` for a console script, so that plain `--help` shows the tool's docstring and its own flags.

    absl lists the key flags of the program (`sys.argv[0]`) and prints the `__main__` module's docstring; a console
    script's `__main__` is a generated wrapper, and the flags belong to the tool's module, or to this one for the
    shared groups the tool defined through it. This registers both modules' flags as the program's, and lends the
    wrapper the tool's docstring.
    """
    import sys

    from absl import app

    program = sys.argv[0]
    for name in (module_name, __name__):
        for flag in FLAGS.get_key_flags_for_module(name):
            FLAGS.register_key_flag_for_module(program, flag)
    main_module = sys.modules["__main__"]
    if main_module is not sys.modules[module_name]:
        main_module.__doc__ = sys.modules[module_name].__doc__
    app.run(main)
