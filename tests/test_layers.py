"""The package's layers: core imports nothing else of helpers; engine imports core only; a topic
imports core and engine, never another topic; nothing imports a command; no import cycles."""

import ast
from pathlib import Path

import pytest

import helpers

PACKAGE = Path(helpers.__file__).resolve().parent
COMMANDS = {"helpers.claims", "helpers.seeds", "helpers.bench", "helpers.build_cache",
            "helpers.gpu_check", "helpers.kernel_polling", "helpers.pdf", "helpers.colab"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the helpers modules it imports (any import statement, at any depth)."""
    modules = {module_name(p): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                raise AssertionError(f"{name}: relative import; use absolute helpers.* imports")
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def layer(module: str) -> tuple[str, str | None]:
    """('core' | 'engine' | 'topic' | 'command' | 'package', topic name or None)."""
    parts = module.split(".")
    if module in COMMANDS:
        return "command", None
    if len(parts) >= 2 and parts[1] in ("core", "engine"):
        return parts[1], None
    if len(parts) >= 3 and parts[1] == "topics":
        return "topic", parts[2]
    return "package", None  # helpers itself and helpers.topics


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that breaks the layering rules."""
    allowed = {"core": {"core"}, "engine": {"core", "engine"},
               "topic": {"core", "engine", "topic"}, "package": {"core", "engine"},
               "command": {"core", "engine", "topic", "package", "command"}}
    bad = []
    for src, deps in graph.items():
        (src_layer, src_topic) = layer(src)
        for dep in deps:
            dep_layer, dep_topic = layer(dep)
            if dep_layer == "package" and src_layer in ("topic", "command"):
                continue  # helpers/__init__ re-exports core and engine
            if dep_layer not in allowed[src_layer]:
                bad.append(f"{src} ({src_layer}) imports {dep} ({dep_layer})")
            elif dep_layer == "topic" and src_layer == "topic" and dep_topic != src_topic:
                bad.append(f"topic {src} imports another topic: {dep}")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle (as the list of modules on it), by depth-first search."""
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                found.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_package_keeps_its_layers():
    graph = import_graph()
    assert len(graph) > 40
    assert violations(graph) == []


def test_the_package_has_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_rules_catch_a_topic_importing_another_topic():
    fake = {"helpers.topics.a": {"helpers.topics.b", "helpers.engine.models"},
            "helpers.topics.b": set(), "helpers.engine.models": {"helpers.core.config"},
            "helpers.core.config": set()}
    assert violations(fake) == ["topic helpers.topics.a imports another topic: helpers.topics.b"]
    fake["helpers.core.config"] = {"helpers.engine.models"}
    assert violations(fake) == ["helpers.core.config (core) imports helpers.engine.models "
                                "(engine)", "topic helpers.topics.a imports another topic: "
                                "helpers.topics.b"]
    assert cycles(fake) == [["helpers.core.config", "helpers.engine.models",
                             "helpers.core.config"]]


def test_a_submodule_of_one_topic_may_import_its_sibling():
    fake = {"helpers.topics.a.x": {"helpers.topics.a.y"}, "helpers.topics.a.y": set()}
    assert violations(fake) == []


def test_the_top_level_namespace_is_core_and_engine_only():
    assert len(helpers.__all__) <= 40
    for name in helpers.__all__:
        module = getattr(getattr(helpers, name), "__module__", "helpers.core.ledger")
        assert layer(module)[0] in ("core", "engine"), (name, module)


@pytest.mark.parametrize("path", sorted(Path(PACKAGE.parents[1], "book").glob("*/*.md")),
                         ids=lambda p: p.stem)
def test_chapters_import_their_topic_as_a_module(path):
    import re
    text = path.read_text()
    assert not re.search(r"^\s*(from helpers(\.\w+)* import \w+ as|import helpers\.\w+ as)",
                         text, re.M), "no aliases for helpers modules"
    assert not re.search(r"\b(sp|np|plt)\s*=", text), "sp, np and plt are sympy, numpy, pyplot"
    topics = re.findall(r"^from helpers\.topics import (\w+)$", text, re.M)
    assert topics in ([], [path.stem]), "a chapter imports its own topic only"
    for topic in topics:
        assert not re.search(rf"\b{topic}\._\w", text), "no private names from a chapter"
        assert "helpers.topics." + topic not in text.replace(f"from helpers.topics import {topic}",
                                                             "")


def test_the_api_page_documents_every_module():
    import re

    page = (PACKAGE.parents[1] / "book" / "api.md").read_text()
    documented = set(re.findall(r"^\.\. automodule:: ([\w.]+)$", page, re.M))
    packages = {m for m in import_graph() if (PACKAGE.parent / m.replace(".", "/")).is_dir()}
    assert set(import_graph()) - packages - documented == set()
