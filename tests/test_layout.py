"""The package's layout is its architecture (docs/architecture.md): each room imports only rooms below it,
and no module imports itself back through others. Read from the source with ``ast``, so that an
import added anywhere, even inside a function or under ``TYPE_CHECKING``, is seen."""

import ast
import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "gaussdiff"

# A room may import the rooms of a lower rank, never one of its own rank or above (docs/architecture.md).
RANK = {
    "errors": 0,
    "diffusion": 1, "nets": 1, "data": 1,
    "samplers": 2,
    "conditioning": 3,
    "training": 4,
    "evaluation": 5,
    "viz": 6,
    "cli": 7,
}


def modules(root: Path) -> dict[str, Path]:
    """``gaussdiff.training.config`` -> its file, for every module under the package ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The gaussdiff modules the module ``name`` (at ``path``) imports, as absolute names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] == "gaussdiff":
                # ``from . import x`` may name a submodule rather than a name.
                found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gaussdiff"}
    return found


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def rank_violations(root: Path) -> list[str]:
    """Every import of a room of the same or a higher rank (the package's front door and ``__main__`` excepted)."""
    known = modules(root)
    found = []
    for name, path in known.items():
        mine = room(name)
        if mine in (None, "__main__"):
            continue
        if mine not in RANK:
            found.append(f"{name}: not in a known room")
            continue
        for target in imports_of(name, path, known):
            theirs = room(target)
            if theirs != mine and (theirs not in RANK or RANK[theirs] >= RANK[mine]):
                found.append(f"{name} ({mine}) imports {target} ({theirs})")
    return found


def import_circles(root: Path) -> list[str]:
    """Every cycle that a depth-first walk of the module import graph meets."""
    known = modules(root)
    graph = {m: sorted(t for t in imports_of(m, p, known) if t in known and t != m) for m, p in known.items()}
    state: dict[str, str] = {}
    found = []

    def visit(m: str, trail: list[str]) -> None:
        state[m] = "open"
        for t in graph[m]:
            if state.get(t) == "open":
                found.append(" -> ".join(trail[trail.index(t):] + [t]))
            elif t not in state:
                visit(t, trail + [t])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    return found


def test_each_room_imports_only_rooms_below_it():
    assert rank_violations(PACKAGE) == []


def test_no_import_circles():
    assert import_circles(PACKAGE) == []


def test_the_checks_see_a_lower_room_importing_a_higher_one_and_a_circle(tmp_path):
    """Neither check is vacuous: a made-up package that breaks each rule once is caught by each."""
    root = tmp_path / "gaussdiff"
    for rel, text in {
        "__init__.py": "",
        "diffusion/__init__.py": "",
        "diffusion/process.py": "from ..training.config import RunConfig\n",  # diffusion reaching up
        "training/__init__.py": "",
        "training/config.py": "from .checkpoint import save\n",
        "training/checkpoint.py": "from . import config\n",  # config -> checkpoint -> config
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    assert rank_violations(root) == ["gaussdiff.diffusion.process (diffusion) imports gaussdiff.training.config "
                                     "(training)"]
    assert import_circles(root) == ["gaussdiff.training.config -> gaussdiff.training.checkpoint -> "
                                    "gaussdiff.training.config"]


def test_no_line_exceeds_the_project_line_length():
    """ruff is not part of the install, so its ``line-length`` in pyproject.toml would go unchecked: this keeps the
    project's own limit checked in CI, for every ``*.py`` file under src/, tests/ and bench/."""
    root = PACKAGE.parent.parent
    limit = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["ruff"]["line-length"]
    too_long = [
        f"{path.relative_to(root)}:{number} ({len(line)})"
        for folder in ("src", "tests", "bench")
        for path in sorted((root / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if len(line) > limit
    ]
    assert not too_long, f"{len(too_long)} lines longer than {limit} characters:\n" + "\n".join(too_long)
