"""The cases of clusterctl's variable substitution: text, and what `clusterctl generate yaml` (v1.14.2)
makes of it with A and B unset, with A=val B=bv, with A="" (the value of `a` in `a: <text>` after
substitution and YAML parsing). tests/test_variables_unit.py checks ours against the table,
tests/test_variables_clusterctl.py the table against the clusterctl binary."""

from __future__ import annotations

UNSET: dict[str, str] = {}
SET = {"A": "val", "B": "bv"}
EMPTY = {"A": ""}

#: (text, A and B unset, A=val B=bv, A="") -> value of `a` after substitution and YAML parsing;
#: MISSING / BAD: clusterctl refuses the file (a missing variable / a syntax error)
MISSING, BAD = "<missing>", "<bad>"
CASES = [
    ("${A}", MISSING, "val", None),
    ("${A:=d}", "d", "val", "d"),
    ("${A=d}", "d", "val", "d"),
    ("${A:-d}", "d", "val", "d"),
    ("${A:?d}", "d", "val", "d"),            # envsubst as clusterctl uses it: a default too
    ("${A:+d}", "d", "val", "d"),            # likewise (not bash's "alternative value")
    ("${A-d}", BAD, BAD, BAD),               # "missing closing brace" in clusterctl
    ("${A+d}", BAD, BAD, BAD),
    ("${A:='false'}", "false", "val", "false"),   # textual: the quotes are YAML's
    ("${A:=}", MISSING, "val", None),       # an empty default is no default
    ("${ A }", MISSING, "val", None),        # the legacy form with blanks
    ("${a}", MISSING, "val", None),         # names ignore case (viper); the environment is upper case
    ("${1A}", MISSING, MISSING, MISSING),
    ("${A:=${B}}", None, "val", None),       # nested: B only inside a default is never missing
    ("${A:=x${B:=y}z}", "xyz", "val", "xyz"),
    ("${A:=a$$b}", "a$$b", "val", "a$$b"),   # no escapes inside a default
    ("${A:=a\\}b}", "a\\b}", "valb}", "a\\b}"),   # a default ends at the first }
    ("$${A}", "${A}", "${A}", "${A}"),       # $$ escapes outside ${...}
    ("$$${A}", MISSING, "$val", "$"),
    ("$A $$ $$$", "$A $ $$", "$A $ $$", "$A $ $$"),
    ("${A:=d}.${A}", "d.", "val.val", "d."),     # the first occurrence decides whether A is required
    ("${A}.${A:=d}", MISSING, "val.val", ".d"),
    ("${A", BAD, BAD, BAD),
    ("${A:=d", BAD, BAD, BAD),
    ("x${}", BAD, BAD, BAD),
]
