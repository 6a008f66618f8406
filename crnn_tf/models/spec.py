"""The model-spec grammar: the paper's network names, e.g. `CLstm384P256+Pool3+Lstm2000P750+3xReLU2000`.

Grammar (whitespace is not allowed; block names are case-sensitive)::

    spec   := item ("+" item)*
    item   := [count "x"] (block | "(" spec ")")      count >= 1 repeats the block or the group
    block  := kind size option*
    kind   := "ReLU" | "Maxout" | "Conv" | "Pool" | "Lstm" | "CLstm"
    option := "P" int    projection units            (Lstm, CLstm)
            | "G" int    maxout group size, default 3 (Maxout)
            | "W" int    patch width in bands        (Conv, CLstm)
            | "S" int    patch stride in bands       (Conv, CLstm)

`ReLU2000` is a dense ReLU layer of 2000 units, `Maxout800G3` 800 maxout units of 3 pieces, `Conv256` 256
frequency-convolution maps, `Lstm2000P750` a peephole LSTM of 2000 cells projected to 750, `CLstm384P256`
a CLSTM whose shared LSTM has 384 cells projected to 256. `PoolN` max-pools over N patches and must follow a
`Conv` or `CLstm` block; it becomes that layer's `pool_size`.

`parse_spec` returns the flat sequence of layers (repeats expanded, pools folded in). Errors are
`SpecError` (a `ValueError`) whose message quotes the spec with a caret under the offending token.
"""
import dataclasses
import re

FREQUENCY_KINDS = ("Conv", "CLstm")
RECURRENT_KINDS = ("Lstm", "CLstm")
FEED_FORWARD_KINDS = ("ReLU", "Maxout", "Conv")

# Which options each kind accepts (letter -> LayerSpec field).
_OPTIONS = {
    "ReLU": {},
    "Maxout": {"G": "group_size"},
    "Conv": {"W": "patch_size", "S": "patch_stride"},
    "Pool": {},
    "Lstm": {"P": "projection"},
    "CLstm": {"P": "projection", "W": "patch_size", "S": "patch_stride"},
}
_OPTION_LETTERS = frozenset(letter for options in _OPTIONS.values() for letter in options)
# Longest names first so that "CLstm" is not read as "C" + "Lstm".
_KIND_PATTERN = re.compile("|".join(sorted(_OPTIONS, key=len, reverse=True)))
_INT_PATTERN = re.compile(r"[0-9]+")
_OPTION_PATTERN = re.compile(r"([A-Z])([0-9]+)")


class SpecError(ValueError):
    """A malformed model spec; the message points at the bad token."""

    def __init__(self, spec, column, message):
        self.spec = spec
        self.column = column  # 0-based
        super().__init__(f"bad model spec, column {column + 1}: {message}\n  {spec}\n  {' ' * column}^")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer of a parsed spec.

    Attributes:
      kind: "ReLU", "Maxout", "Conv", "Lstm" or "CLstm".
      size: units, maps or cells.
      projection: projection units (Lstm/CLstm) or None.
      group_size: maxout pieces per unit (Maxout) or None.
      patch_size, patch_stride: patch geometry in bands (Conv/CLstm) or None for the builder's default.
      pool_size: patches per max-pooling group (Conv/CLstm; 1 = no pooling), or None for other kinds.
      token: the block as written, e.g. "CLstm384P256".
      column: 0-based position of the block in the spec (for error messages).
    """

    kind: str
    size: int
    projection: int | None = None
    group_size: int | None = None
    patch_size: int | None = None
    patch_stride: int | None = None
    pool_size: int | None = None
    token: str = ""
    column: int = 0

    @property
    def is_recurrent(self):
        return self.kind in RECURRENT_KINDS

    @property
    def is_frequency(self):
        return self.kind in FREQUENCY_KINDS


def parse_spec(spec):
    """Parses a model spec into a tuple of `LayerSpec`, repeats expanded and `PoolN` folded in.

    Raises:
      SpecError: the spec is malformed; the message carries a caret under the bad token.
    """
    if not isinstance(spec, str):
        raise TypeError(f"a model spec is a string, got {type(spec).__name__}")
    parser = _Parser(spec)
    blocks = parser.parse()
    return _fold_pools(spec, blocks)


class _Parser:
    """Recursive-descent parser over the spec string; keeps the position for error messages."""

    def __init__(self, spec):
        self.spec = spec
        self.position = 0

    def parse(self):
        if not self.spec:
            raise SpecError(self.spec, 0, "empty model spec")
        blocks = self._sequence()
        if self.position < len(self.spec):
            char = self.spec[self.position]
            what = "unmatched ')'" if char == ")" else f"unexpected {char!r}, expected '+' or the end"
            self._fail(what)
        return blocks

    def _fail(self, message, column=None):
        raise SpecError(self.spec, self.position if column is None else column, message)

    def _peek(self):
        return self.spec[self.position] if self.position < len(self.spec) else ""

    def _sequence(self):
        blocks = self._item()
        while self._peek() == "+":
            self.position += 1
            blocks += self._item()
        return blocks

    def _item(self):
        count = 1
        count_match = re.compile(r"([0-9]+)x").match(self.spec, self.position)
        if count_match:
            count = int(count_match.group(1))
            if count < 1:
                self._fail("a repeat count must be at least 1")
            self.position = count_match.end()
        if self._peek() == "(":
            opening = self.position
            self.position += 1
            group = self._sequence()
            if self._peek() != ")":
                self._fail(f"expected ')' to close the '(' at column {opening + 1}")
            self.position += 1
            return group * count
        return [self._block()] * count

    def _block(self):
        start = self.position
        kind_match = _KIND_PATTERN.match(self.spec, start)
        if not kind_match:
            ahead = re.compile(r"[A-Za-z]*").match(self.spec, start).group(0)
            if not ahead:
                found = repr(self._peek()) if self._peek() else "the end"
                self._fail(f"expected a block ({', '.join(_OPTIONS)}) or '(', found {found}")
            suggestion = next((kind for kind in _OPTIONS if ahead.lower().startswith(kind.lower())), None)
            hint = f" (did you mean {suggestion!r}?)" if suggestion else f"; known blocks: {', '.join(_OPTIONS)}"
            self._fail(f"unknown block {ahead!r}{hint}")
        kind = kind_match.group(0)
        self.position = kind_match.end()
        size_match = _INT_PATTERN.match(self.spec, self.position)
        if not size_match:
            self._fail(f"{kind} needs a size, e.g. {kind}{_EXAMPLE_SIZES[kind]}")
        size = int(size_match.group(0))
        if size < 1:
            self._fail(f"{kind} size must be at least 1")
        self.position = size_match.end()
        fields = {}
        while option_match := _OPTION_PATTERN.match(self.spec, self.position):
            letter, value = option_match.group(1), int(option_match.group(2))
            allowed = _OPTIONS[kind]
            if letter not in allowed:
                accepted = ", ".join(allowed) or "none"
                self._fail(f"{kind} does not take option {letter!r} (accepted: {accepted})")
            if allowed[letter] in fields:
                self._fail(f"option {letter!r} given twice")
            if value < 1:
                self._fail(f"option {letter!r} must be at least 1")
            fields[allowed[letter]] = value
            self.position = option_match.end()
        if kind == "Maxout":
            fields.setdefault("group_size", 3)
        char = self._peek()
        if char in _OPTION_LETTERS:
            self._fail(f"option {char!r} needs a number, e.g. {char}3")
        if char and char not in "+)":
            self._fail(f"unexpected {char!r} after block {self.spec[start:self.position]!r}")
        return LayerSpec(kind=kind, size=size, token=self.spec[start : self.position], column=start, **fields)


_EXAMPLE_SIZES = {"ReLU": 2000, "Maxout": "800G3", "Conv": 256, "Pool": 3, "Lstm": "2000P750", "CLstm": "384P256"}


def _fold_pools(spec, blocks):
    """Merges every `PoolN` into the Conv/CLstm block before it (pool_size, default 1)."""
    layers = []
    last_pooled = False
    for block in blocks:
        if block.kind != "Pool":
            layers.append(dataclasses.replace(block, pool_size=1) if block.is_frequency else block)
            last_pooled = False
            continue
        previous = layers[-1] if layers else None
        if previous is None or not previous.is_frequency:
            after = f"after {previous.token!r}" if previous else "at the start"
            raise SpecError(spec, block.column, f"{block.token} must follow a Conv or CLstm block, not come {after}")
        if last_pooled:
            raise SpecError(spec, block.column, f"{previous.token} is already pooled")
        layers[-1] = dataclasses.replace(previous, pool_size=block.size)
        last_pooled = True
    return tuple(layers)
