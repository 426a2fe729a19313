"""clusterctl's variable substitution in provider components files, as `clusterctl init` does it.

Why here: a release's components file (and the kustomize render of a provider's config/default, which
is what a release ships) carries `${VAR:=default}` in Deployment args, ConfigMap data and annotations.
`clusterctl init` substitutes them before it parses the YAML; a stack that declared the text as is
would run controllers with flags like `--diagnostics-address=${CAPI_DIAGNOSTICS_ADDRESS:=:8443}`.
No Pulumi import: the rules are tested on their own and against the clusterctl binary.

The rules, learnt from clusterctl v1.14 (its simple yaml processor on top of drone/envsubst) and
checked against `clusterctl generate yaml`:
- substitution is textual, on the whole file, before YAML parsing: `${X:='false'}` becomes `'false'`,
  which YAML reads as the string "false";
- `${NAME}`: the value; `${NAME:=d}`, `${NAME=d}`, `${NAME:-d}` (and `:?`, `:+`, which clusterctl
  treats the same way): the value if it is not empty, else the default. `${NAME-d}` and `${NAME+d}` are
  errors in clusterctl ("missing closing brace"), and here;
- a default may hold further `${...}` (`${A:=x${B:=y}z}`) and runs to the first `}`; no escapes inside it;
- `$$` is a literal `$` outside `${...}` (`$${A}` is the text `${A}`); a `$` before anything else stays;
- whitespace around a bare name is dropped (`${ NAME }`, clusterctl's legacy form);
- names are letters, digits and `_`; clusterctl looks them up ignoring case (viper), so do we;
- a variable is missing when it has no value and its *first* occurrence has no default (an empty
  default counts as none); a variable that only appears inside another's default is never missing
  (it becomes empty). Every missing variable is reported at once, before anything is substituted.
Not supported (clusterctl's envsubst has them, no provider release uses them): `${#X}`, `${X:1:2}`,
`${X,}`, `${X^}`, `${X#p}`, `${X%p}`, `${X/a/b}`; each is an error naming the expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: a variable's value, or None when it has none
Lookup = Callable[[str], str | None]

_LEGACY = re.compile(r"\$\{[ \t\n\f\r]*([A-Za-z0-9_$]+)[ \t\n\f\r]*\}")
_DEFAULT_OPS = (":=", ":-", ":?", ":+", "=")
#: envsubst's string functions after a name, which this program refuses by name
_FUNCTIONS = {",": "${NAME,} (case)", "^": "${NAME^} (case)", "/": "${NAME/a/b} (replace)",
              "%": "${NAME%p} (suffix removal)", "#": "${NAME#p} (prefix removal)"}


class VariableError(Exception):
    """A components file's variables cannot be substituted; the message says what to change."""


class SubstitutionSyntaxError(VariableError):
    """An expression clusterctl would not parse (or one this program does not implement)."""


class MissingVariables(VariableError):
    """Variables with no value and no default; `names` lists them, the message says how to set them."""

    def __init__(self, names: list[str], where: str = "") -> None:
        self.names = sorted(names)
        self.where = where
        sets = "; ".join(f"pulumi config set --path 'providers.variables.{n}' VALUE" for n in self.names)
        exports = " ".join(f"{n}=VALUE" for n in self.names)
        prefix = f"{where}: " if where else ""
        super().__init__(
            f"{prefix}clusterctl variable(s) with no value and no default: {', '.join(self.names)}. "
            f"Set each in the stack config ({sets}) or in the environment `pulumi` runs in "
            f"(export {exports}); nothing was installed")


@dataclass(frozen=True)
class _Var:
    name: str
    op: str                                    # "" for ${NAME}, else one of _DEFAULT_OPS
    default: tuple[str | _Var, ...] = ()       # text and nested expressions, concatenated


_Node = str | _Var


def _name_char(ch: str) -> bool:
    return ch == "_" or ch.isalpha() or ch.isdecimal()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str, start: int) -> SubstitutionSyntaxError:
        line = self.text.count("\n", 0, start) + 1
        snippet = self.text[start:start + 60].split("\n", 1)[0]
        return SubstitutionSyntaxError(f"line {line}: {what} in {snippet!r}")

    def document(self) -> list[_Node]:
        nodes: list[_Node] = []
        buf: list[str] = []
        text, n = self.text, len(self.text)
        while self.pos < n:
            dollar = text.find("$", self.pos)      # files are large and `$` is rare: jump to the next one
            if dollar < 0:
                buf.append(text[self.pos:])
                break
            buf.append(text[self.pos:dollar])
            if text.startswith("${", dollar):
                if any(buf):
                    nodes.append("".join(buf))
                buf = []
                self.pos = dollar + 2
                nodes.append(self.expression(dollar))
            elif text.startswith("$$", dollar):    # an escaped dollar
                buf.append("$")
                self.pos = dollar + 2
            else:
                buf.append("$")
                self.pos = dollar + 1
        if any(buf):
            nodes.append("".join(buf))
        return nodes

    def expression(self, start: int) -> _Var:
        """After `${`: a name, then `}` or a default operator and its default."""
        text = self.text
        if text.startswith("#", self.pos):
            raise self.fail("${#NAME} (length) is not supported", start)
        name_start = self.pos
        while self.pos < len(text) and _name_char(text[self.pos]):
            self.pos += 1
        name = text[name_start:self.pos]
        if not name:
            raise self.fail("unable to parse variable name", start)
        rest = text[self.pos:self.pos + 2]
        if rest[:1] == "}":
            self.pos += 1
            return _Var(name, "")
        op = next((o for o in _DEFAULT_OPS if rest.startswith(o)), None)
        if op is None:
            if rest[:1] == ":":
                raise self.fail("${NAME:offset:length} (substring) is not supported", start)
            if rest[:1] in _FUNCTIONS:
                raise self.fail(f"{_FUNCTIONS[rest[:1]]} is not supported", start)
            hint = f" (clusterctl has no `{rest[:1]}` form; write ${{{name}:{rest[:1]}...}})" \
                if rest[:1] in ("-", "+") else ""
            raise self.fail(f"missing closing brace{hint}", start)
        self.pos += len(op)
        default: list[_Node] = []
        while True:
            if self.pos >= len(text):
                raise self.fail("unable to parse substitution within function (no closing brace)", start)
            if text[self.pos] == "}":
                self.pos += 1
                return _Var(name, op, tuple(default))
            if text.startswith("${", self.pos):
                inner = self.pos
                self.pos += 2
                default.append(self.expression(inner))
                continue
            end = self.pos
            while end < len(text) and text[end] != "}" and not text.startswith("${", end):
                end += 1
            default.append(text[self.pos:end])
            self.pos = end


def _parse(text: str) -> list[_Node]:
    return _Parser(_LEGACY.sub(lambda m: "${" + m.group(1) + "}", text)).document()


def _default_text(var: _Var) -> str:
    """The default as clusterctl reports it (nested expressions as `${NAME}`): empty = no default."""
    return "".join(p if isinstance(p, str) else "${" + p.name + "}" for p in var.default)


def variables(text: str) -> dict[str, str | None]:
    """Every variable of a components file (first occurrences), with its default or None (required);
    what `clusterctl generate provider --describe` lists."""
    out: dict[str, str | None] = {}
    for node in _parse(text):
        if isinstance(node, _Var) and node.name not in out:
            out[node.name] = _default_text(node) or None
    return out


def _evaluate(node: _Node, lookup: Lookup) -> str:
    if isinstance(node, str):
        return node
    args = "".join(_evaluate(p, lookup) for p in node.default)     # evaluated first, as envsubst does
    value = lookup(node.name) or ""
    return args if node.op and not value else value


def substitute(text: str, lookup: Lookup, where: str = "") -> str:
    """The text with every `${...}` replaced. Raises MissingVariables (all of them at once) before
    substituting anything, SubstitutionSyntaxError for an expression clusterctl would refuse."""
    try:
        nodes = _parse(text)
    except SubstitutionSyntaxError as err:
        raise SubstitutionSyntaxError(f"{where}: {err}" if where else str(err)) from None
    seen: dict[str, _Var] = {}
    for node in nodes:
        if isinstance(node, _Var):
            seen.setdefault(node.name, node)
    missing = [name for name, var in seen.items() if not _default_text(var) and lookup(name) is None]
    if missing:
        raise MissingVariables(missing, where)
    return "".join(_evaluate(n, lookup) for n in nodes)


def lookup(config: Mapping[str, str], environ: Mapping[str, str]) -> Lookup:
    """Values from the stack config first (`providers.variables`), then from the environment, names
    compared ignoring case as clusterctl's viper does (its environment lookup is by the upper-case name).
    The order differs from clusterctl's, where the environment overrides its config file: the stack's
    config is what `pulumi up` declares, so an operator's shell cannot silently change it; the
    environment only fills what the config leaves out. A value set to "" is a value (as in clusterctl)."""
    folded = {k.upper(): v for k, v in config.items()}

    def get(name: str) -> str | None:
        key = name.upper()
        if key in folded:
            return folded[key]
        return environ.get(key)
    return get
