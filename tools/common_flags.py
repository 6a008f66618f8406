"""Flag groups that several tools share, defined once here from the config dataclasses they fill."""
import dataclasses
import inspect

from absl import flags

FLAGS = flags.FLAGS
AUGMENT_PREFIX = "augment_"


def field_docs(cls) -> dict[str, str]:
    """`{field: help}` from a dataclass docstring's `Args:`/`Attributes:` lines (`name, other: text`)."""
    docs = {}
    for line in (inspect.getdoc(cls) or "").splitlines():
        names, _, text = line.strip().partition(": ")
        if text:
            for name in names.split(", "):
                docs.setdefault(name, text)
    return docs


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


def augment_from_flags():
    """The `AugmentConfig` the `--augment_*` flags describe."""
    from crnn_tf.data.augment import AugmentConfig

    values = {}
    for field in dataclasses.fields(AugmentConfig):
        value = getattr(FLAGS, AUGMENT_PREFIX + field.name)
        if field.name == "speed_factors":
            value = tuple(float(v) for v in value)
        elif isinstance(field.default, tuple):
            value = tuple(value)
        values[field.name] = value
    return AugmentConfig(**values)


def run_tool(main, module_name: str, *shared_modules: str) -> None:
    """`app.run(main)` for a console script, so that plain `--help` shows the tool's docstring and its own flags.

    absl lists the key flags of the program (`sys.argv[0]`) and prints the `__main__` module's docstring; a console
    script's `__main__` is a generated wrapper, and the flags belong to the tool's module. This registers the tool's
    flags (and those of `shared_modules`, e.g. "tools.common_flags") as the program's, and lends the wrapper the
    tool's docstring.
    """
    import sys

    from absl import app

    program = sys.argv[0]
    for name in (module_name, *shared_modules):
        for flag in FLAGS.get_key_flags_for_module(name):
            FLAGS.register_key_flag_for_module(program, flag)
    main_module = sys.modules["__main__"]
    if main_module is not sys.modules[module_name]:
        main_module.__doc__ = sys.modules[module_name].__doc__
    app.run(main)
