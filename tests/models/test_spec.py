"""The model-spec grammar: the paper's names parse; bad specs point at the bad token."""
import pytest

from crnn_tf.models.spec import SpecError, parse_spec


def summary(spec):
    """(kind, size, projection/group, pool) per layer, for compact expectations."""
    layers = parse_spec(spec)
    return [(layer.kind, layer.size, layer.projection or layer.group_size, layer.pool_size) for layer in layers]


RELU = ("ReLU", 2000, None, None)

GOOD_SPECS = {
    "4xReLU2000": [RELU] * 4,
    "4xMaxout800G3": [("Maxout", 800, 3, None)] * 4,
    "Maxout800": [("Maxout", 800, 3, None)],  # group size defaults to 3
    "2x(Conv256+Pool3)+3xReLU2000": [("Conv", 256, None, 3)] * 2 + [RELU] * 3,
    "Lstm2000P750+3xReLU2000": [("Lstm", 2000, 750, None)] + [RELU] * 3,
    "CLstm384P256+Pool3+Lstm2000P750+3xReLU2000": [("CLstm", 384, 256, 3), ("Lstm", 2000, 750, None)] + [RELU] * 3,
    "2x(CLstm256+Pool3)+3xReLU2000": [("CLstm", 256, None, 3)] * 2 + [RELU] * 3,
    "Lstm750": [("Lstm", 750, None, None)],
    "3xLstm1024P512": [("Lstm", 1024, 512, None)] * 3,
    "CLstm384": [("CLstm", 384, None, 1)],
    "Conv128+Pool2+Conv64": [("Conv", 128, None, 2), ("Conv", 64, None, 1)],
    "2x(2x(ReLU10)+Maxout5G2)": ([("ReLU", 10, None, None)] * 2 + [("Maxout", 5, 2, None)]) * 2,
    "1xReLU7": [("ReLU", 7, None, None)],
}


@pytest.mark.parametrize("spec", list(GOOD_SPECS), ids=list(GOOD_SPECS))
def test_good_spec(spec):
    assert summary(spec) == GOOD_SPECS[spec]


def test_patch_options_and_tokens():
    (layer,) = parse_spec("CLstm384P256W4S2+Pool2")
    assert (layer.patch_size, layer.patch_stride, layer.pool_size) == (4, 2, 2)
    assert (layer.token, layer.column) == ("CLstm384P256W4S2", 0)
    conv = parse_spec("ReLU5+Conv8W3")
    assert conv[1].patch_size == 3 and conv[1].patch_stride is None and conv[1].column == 6


def test_repeats_keep_the_written_column():
    layers = parse_spec("ReLU5+3xLstm4")
    assert [layer.column for layer in layers] == [0, 8, 8, 8]


# spec -> (1-based column of the caret, fragment of the message)
BAD_SPECS = {
    "empty": ("", 1, "empty model spec"),
    "wrong_case": ("4xRelu2000", 3, "unknown block 'Relu' (did you mean 'ReLU'?)"),
    "unknown_block": ("ReLU2000+Tanh100", 10, "unknown block 'Tanh'"),
    "upper_case_clstm": ("CLSTM384", 1, "did you mean 'CLstm'?"),
    "missing_size": ("4xReLU", 7, "ReLU needs a size"),
    "zero_size": ("ReLU0", 5, "size must be at least 1"),
    "zero_repeat": ("0xReLU2000", 1, "repeat count must be at least 1"),
    "dangling_plus": ("ReLU2000+", 10, "expected a block"),
    "dangling_repeat": ("4x", 3, "expected a block"),
    "unclosed_group": ("2x(Conv256+Pool3+3xReLU2000", 28, "expected ')' to close the '(' at column 3"),
    "unmatched_paren": ("Conv256+Pool3)+ReLU2000", 14, "unmatched ')'"),
    "empty_group": ("2x()", 4, "expected a block"),
    "option_not_allowed": ("ReLU2000P500", 9, "ReLU does not take option 'P'"),
    "group_on_lstm": ("Lstm2000G3", 9, "Lstm does not take option 'G'"),
    "option_without_number": ("Lstm2000P", 9, "option 'P' needs a number"),
    "option_twice": ("Lstm2000P750P500", 13, "option 'P' given twice"),
    "space": ("ReLU2000 +ReLU2000", 9, "unexpected ' '"),
    "lower_case_option": ("Lstm2000p750", 9, "unexpected 'p'"),
    "pool_first": ("Pool3+ReLU2000", 1, "Pool3 must follow a Conv or CLstm block, not come at the start"),
    "pool_after_dense": ("ReLU2000+Pool3", 10, "not come after 'ReLU2000'"),
    "double_pool": ("Conv256+Pool3+Pool2", 15, "Conv256 is already pooled"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_points_at_token(case):
    spec, column, fragment = BAD_SPECS[case]
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.column + 1 == column
    first, quoted, caret = str(error).split("\n")
    assert first.startswith(f"bad model spec, column {column}: ")
    assert fragment in first
    assert quoted == f"  {spec}"
    assert caret == " " * (column + 1) + "^"


def test_non_string_spec():
    with pytest.raises(TypeError):
        parse_spec(None)
