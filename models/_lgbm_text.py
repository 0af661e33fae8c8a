"""Strict check of a LightGBM text model before LightGBM's C++ parser sees it.

LightGBM's loader trusts its input: an out-of-range ``split_feature`` reads outside the row
(segfault), a child index that points back up the tree loops forever, a ``right_child`` past the
leaves reads outside the leaf array (a wrong prediction), ``tree_sizes`` that do not match the text
abort the process, a huge ``num_class`` or ``num_leaves`` allocates without limit, and a parameter
line without ``:`` reads past a vector's end. A model file is data that anyone may edit, so
:func:`check` parses the whole text in Python first, bounded, and accepts only what LightGBM 4.x
writes for a binary model with numerical splits (what ``lgbm`` trains):

- only printable ASCII and ``\\n`` line ends, at most :data:`MAX_CHARS` characters;
- the header lines in LightGBM's order with fixed values (``version=v4``, ``num_class=1``,
  ``num_tree_per_iteration=1``, ``label_index=0``, ``objective=binary sigmoid:<s>`` with finite
  ``s > 0``), ``max_feature_idx`` = ``n_features - 1``, one feature name and one feature info
  (``[min:max]`` or ``none``) per feature, and ``tree_sizes``, each equal to the length of its
  ``Tree=`` block as it stands in the text (so any hand edit of a tree must also fix its size);
- 1 to :data:`MAX_TREES` trees ``Tree=0``, ``Tree=1``, ... each with exactly the 16 lines LightGBM
  writes, in its order, ``num_cat=0`` and ``is_linear=0`` (no categorical or linear trees),
  ``1 <= num_leaves <=`` :data:`MAX_LEAVES`, every array of the length LightGBM reads,
  ``split_feature`` in ``[0, n_features)``, ``decision_type`` a numerical split (0, 2, 4, 6, 8 or
  10: default-left bit and missing type none/zero/NaN), every number finite, counts non-negative
  32-bit integers, and the child links a tree: internal nodes ``1 .. num_leaves-2`` and leaves
  ``~0 .. ~(num_leaves-1)``, each reached exactly once from the root 0 (no cycle, no sharing, none
  left out);
- the sum over trees of the largest ``|leaf_value|`` finite, so a raw score never overflows;
- after ``end of trees``: ``feature_importances:`` (``name=count`` lines of known features), an
  optional ``parameters:`` section of ``[name: value]`` lines (plain characters only) closed by
  ``end of parameters``, and the optional ``pandas_categorical:null`` line the Python package adds.

Any other line, key or value is refused with a one-line :class:`ValueError` naming where. LightGBM is
then given only the checked header and trees (up to ``end of trees``): the importances and training
parameters after it are a record, never read back for prediction.
"""

from __future__ import annotations

import math
import re

#: Longest text accepted, in characters (= bytes, the text is ASCII): 64 MiB.
MAX_CHARS = 64 * 1024 * 1024
#: Most trees accepted.
MAX_TREES = 100_000
#: Most leaves per tree accepted (LightGBM's own upper limit for ``num_leaves``).
MAX_LEAVES = 131_072
#: Numerical split kinds: bit 0 (categorical) clear, bit 1 default-left, bits 2-3 missing type 0/1/2.
DECISION_TYPES = frozenset({0, 2, 4, 6, 8, 10})

_INT = re.compile(r"-?[0-9]{1,10}")
_FLOAT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,4})?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_INFO = re.compile(r"\[([^:\]]+):([^:\]]+)\]")
_PARAM = re.compile(r"\[([a-z][a-z0-9_]{0,99}): ([A-Za-z0-9_.,+\-]{0,200})\]")
_TEXT = re.compile(r"[\x20-\x7e\n]*")
_HEADER = ("version", "num_class", "num_tree_per_iteration", "label_index", "max_feature_idx", "objective",
           "feature_names", "feature_infos", "tree_sizes")
# Tree block lines in LightGBM's order: (key, element kind, length as "n" leaves or "n-1" internal nodes).
_TREE = (("num_leaves", "int", None), ("num_cat", "int", None), ("split_feature", "int", "n-1"),
         ("split_gain", "float", "n-1"), ("threshold", "float", "n-1"), ("decision_type", "int", "n-1"),
         ("left_child", "int", "n-1"), ("right_child", "int", "n-1"), ("leaf_value", "float", "n"),
         ("leaf_weight", "float", "n"), ("leaf_count", "count", "n"), ("internal_value", "float", "n-1"),
         ("internal_weight", "float", "n-1"), ("internal_count", "count", "n-1"), ("is_linear", "int", None),
         ("shrinkage", "float", None))


def _short(value: str) -> str:
    return value if len(value) <= 40 else value[:40] + "..."


def _int(value: str, where: str) -> int:
    if not _INT.fullmatch(value) or not -(2**31) <= int(value) < 2**31:
        raise ValueError(f"{where}: {_short(value)!r} is not a 32-bit integer")
    return int(value)


def _float(value: str, where: str) -> float:
    number = float(value) if len(value) <= 40 and _FLOAT.fullmatch(value) else math.nan
    if not math.isfinite(number):
        raise ValueError(f"{where}: {_short(value)!r} is not a finite number")
    return number


def _values(text: str, kind: str, length: int, where: str) -> list:
    items = text.split(" ") if text else []
    if len(items) != length:
        raise ValueError(f"{where}: {len(items)} values, expected {length}")
    if kind == "float":
        return [_float(v, where) for v in items]
    out = [_int(v, where) for v in items]
    if kind == "count" and any(v < 0 for v in out):
        raise ValueError(f"{where}: a count is negative")
    return out


def _key_line(line: str, key: str, where: str) -> str:
    if not line.startswith(key + "="):
        raise ValueError(f"{where}: expected a {key}= line, found {_short(line)!r}")
    return line[len(key) + 1:]


def _check_header(lines: list[str], n_features: int) -> tuple[list[str], list[int]]:
    """The feature names and tree sizes, after checking every header line."""
    if "tree_sizes" not in {line.partition("=")[0] for line in lines}:
        raise ValueError("header: no tree_sizes line (LightGBM writes one; it says where each tree ends)")
    expected = ["tree", *_HEADER]
    for want, line in zip(expected, lines, strict=False):
        if line.partition("=")[0] != want or (want == "tree") != (line == "tree"):
            raise ValueError(f"header: expected a {want} line, found {_short(line)!r}")
    if len(lines) != len(expected):
        raise ValueError(f"header: {len(lines)} lines, expected the {len(expected)} LightGBM writes")
    values = {key: line[len(key) + 1:] for key, line in zip(_HEADER, lines[1:], strict=True)}
    for key, want in (("version", "v4"), ("num_class", "1"), ("num_tree_per_iteration", "1"), ("label_index", "0"),
                      ("max_feature_idx", str(n_features - 1))):
        if values[key] != want:
            raise ValueError(f"header: {key}={_short(values[key])}, expected {want}")
    objective = re.fullmatch(r"binary sigmoid:(\S+)", values["objective"])
    if not objective or _float(objective[1], "header: objective sigmoid") <= 0:
        raise ValueError(f"header: objective={_short(values['objective'])}, expected binary sigmoid:<positive>")
    names = values["feature_names"].split(" ")
    if len(names) != n_features or len(set(names)) != n_features or not all(_NAME.fullmatch(n) for n in names):
        raise ValueError(f"header: feature_names must be {n_features} distinct plain names")
    infos = values["feature_infos"].split(" ")
    if len(infos) != n_features:
        raise ValueError(f"header: feature_infos has {len(infos)} entries, expected {n_features}")
    for info in infos:
        bounds = _INFO.fullmatch(info)
        if info != "none" and not (bounds and _float(bounds[1], "header: feature_infos")
                                   <= _float(bounds[2], "header: feature_infos")):
            raise ValueError(f"header: feature_infos entry {_short(info)!r} is not [min:max] or none")
    sizes = _values(values["tree_sizes"], "count", len(values["tree_sizes"].split(" ")), "header: tree_sizes")
    if not 1 <= len(sizes) <= MAX_TREES:
        raise ValueError(f"header: tree_sizes lists {len(sizes)} trees, expected 1 to {MAX_TREES}")
    return names, sizes


def _check_links(left: list[int], right: list[int], n: int, where: str) -> None:
    """Every internal node and leaf reached exactly once from the root: a tree, no cycle, no sharing."""
    seen_node = [False] * (n - 1)
    seen_leaf = [False] * n
    seen_node[0] = True
    stack = [0]
    while stack:
        node = stack.pop()
        for side, child in (("left_child", left[node]), ("right_child", right[node])):
            if child >= 0:
                if child >= n - 1 or seen_node[child]:
                    what = "is not an internal node" if child >= n - 1 else "is reached twice (a cycle or shared)"
                    raise ValueError(f"{where}: {side} of node {node} is {child}, which {what}")
                seen_node[child] = True
                stack.append(child)
            else:
                leaf = ~child
                if leaf >= n or seen_leaf[leaf]:
                    what = "is not a leaf" if leaf >= n else "is reached twice"
                    raise ValueError(f"{where}: {side} of node {node} is {child} (leaf {leaf}), which {what}")
                seen_leaf[leaf] = True
    if not all(seen_node) or not all(seen_leaf):
        raise ValueError(f"{where}: not every node and leaf is reached from the root")


def _check_tree(block: str, index: int, n_features: int) -> float:
    """Check one ``Tree=`` block (with its blank lines); returns its largest ``|leaf_value|``."""
    where = f"Tree={index}"
    lines = block.split("\n")
    if lines[0] != where or lines[-3:] != ["", "", ""] or len(lines) != len(_TREE) + 4:
        raise ValueError(f"{where}: the {len(block)} characters its tree_sizes entry gives are not the "
                         f"{len(_TREE)} lines LightGBM writes for one tree (tree_sizes stale, or lines added/removed)")
    raw = {key: _key_line(line, key, where) for (key, _, _), line in zip(_TREE, lines[1:-3], strict=True)}
    n = _int(raw["num_leaves"], f"{where}: num_leaves")
    if not 1 <= n <= MAX_LEAVES:
        raise ValueError(f"{where}: num_leaves={n}, expected 1 to {MAX_LEAVES}")
    if raw["num_cat"] != "0" or raw["is_linear"] != "0":
        raise ValueError(f"{where}: categorical or linear trees are not accepted (num_cat and is_linear must be 0)")
    _float(raw["shrinkage"], f"{where}: shrinkage")
    arrays = {}
    for key, kind, size in _TREE:
        if size is not None:
            length = n if size == "n" else n - 1
            if key == "leaf_weight" and n == 1 and raw[key] == "":
                length = 0  # LightGBM writes no weight for a tree that could not split
            arrays[key] = _values(raw[key], kind, length, f"{where}: {key}")
    if any(not 0 <= f < n_features for f in arrays["split_feature"]):
        raise ValueError(f"{where}: split_feature outside [0, {n_features})")
    if any(d not in DECISION_TYPES for d in arrays["decision_type"]):
        raise ValueError(f"{where}: decision_type not a numerical split (allowed: {sorted(DECISION_TYPES)})")
    if n > 1:
        _check_links(arrays["left_child"], arrays["right_child"], n, where)
    return max(abs(v) for v in arrays["leaf_value"])


def _check_tail(lines: list[str], names: set[str]) -> None:
    """What follows ``end of trees``: importances, the training parameters, the pandas line."""
    i = 0

    def expect(line: str) -> None:
        nonlocal i
        if i >= len(lines) or lines[i] != line:
            found = repr(_short(lines[i])) if i < len(lines) else "the end"
            raise ValueError(f"after the trees: expected {line!r}, found {found}")
        i += 1

    expect("")
    expect("feature_importances:")
    while i < len(lines) and lines[i]:
        name, _, count = lines[i].partition("=")
        if name not in names or _int(count, "feature_importances") < 1:
            raise ValueError(f"feature_importances: {_short(lines[i])!r} is not name=count of a known feature")
        i += 1
    if lines[i:i + 2] == ["", "parameters:"]:
        i += 2
        keys: set[str] = set()
        while i < len(lines) and lines[i] not in ("", "end of parameters"):
            param = _PARAM.fullmatch(lines[i])
            if not param or param[1] in keys:
                raise ValueError(f"parameters: {_short(lines[i])!r} is not a [name: value] line of a new name")
            keys.add(param[1])
            i += 1
        expect("")
        expect("end of parameters")
    if lines[i:] == ["", "pandas_categorical:null", ""]:
        return
    if lines[i:] != [""]:
        found = lines[i + 1] if i + 1 < len(lines) and not lines[i] else lines[i] if i < len(lines) else ""
        raise ValueError(f"after the trees: unexpected line {_short(found)!r}")


def check(text: str, n_features: int) -> str:
    """Check LightGBM model text for a binary model on ``n_features`` features; return the part to load.

    Raises :class:`ValueError` (one line) on anything LightGBM 4.x would not write for such a model.
    """
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        raise ValueError(f"the booster text must be a string of at most {MAX_CHARS} characters")
    if not 1 <= n_features < 2**31:
        raise ValueError(f"n_features={n_features}, expected a positive 32-bit integer")
    if not _TEXT.fullmatch(text):
        bad = next(c for c in text if not ("\x20" <= c <= "\x7e" or c == "\n"))
        raise ValueError(f"the booster text holds the character {bad!r}; LightGBM writes printable ASCII and \\n")
    head, sep, _ = text.partition("\n\nTree=")
    if not sep:
        raise ValueError("the booster text has no header followed by a blank line and Tree=0")
    names, sizes = _check_header(head.split("\n"), n_features)
    at = len(head) + 2
    total = 0.0
    for index, size in enumerate(sizes):
        if size < 1 or at + size > len(text):
            raise ValueError(f"header: tree_sizes entry {index} ({size}) does not fit the text")
        total += _check_tree(text[at:at + size], index, n_features)
        at += size
    if not math.isfinite(total) or total > 1e300:
        raise ValueError("leaf values so large that a raw score could overflow")
    end = "end of trees\n"
    if not text.startswith(end, at):
        raise ValueError(f"header: tree_sizes do not match the {len(sizes)} Tree= blocks (expected 'end of trees' at "
                         f"character {at})")
    _check_tail(text[at + len(end):].split("\n"), set(names))
    return text[:at + len(end)]
