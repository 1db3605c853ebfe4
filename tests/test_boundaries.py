"""The rooms follow the processes (docs/architecture.md): the web side never loads the
model's libraries, the engine never loads Django, the scheduler never loads torch, and no
module of ours imports itself back through another.

Each side is imported in a fresh interpreter, which then reports what it loaded."""

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "generation", "storyteller")
MODEL_LIBRARIES = ("torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers", "gguf")
DJANGO_SIDE = ("django", "channels", "celery", "generation", "storyteller")

pytestmark = pytest.mark.nodb


def loaded_after(code: str, tmp_path, *, only: tuple[str, ...]) -> list[str]:
    """The top-level packages among `only` that a fresh interpreter holds after running `code`."""
    report = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}} & set({only!r}))))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STORYTELLER_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)  # the web side's own default: SQLite in the data directory
    done = subprocess.run(
        [sys.executable, "-c", report], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_web_side_never_loads_the_models_libraries(tmp_path):
    code = """
        import os
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyteller.settings")
        from storyteller.asgi import application  # Daphne's application: HTTP and websockets
        from django.contrib import admin
        from django.urls import get_resolver

        def resolve(patterns):
            for pattern in patterns:
                if hasattr(pattern, "url_patterns"):
                    resolve(pattern.url_patterns)
                else:
                    pattern.callback  # imports the view
        resolve(get_resolver().url_patterns)
        assert len(admin.site._registry) > 5 and admin.site.get_urls()
        from storyteller.celery import app  # what the web side uses to send work to the workers
        app.loader.import_default_modules()  # Celery's autodiscovery of every app's tasks
    """
    assert loaded_after(code, tmp_path, only=MODEL_LIBRARIES) == []


def test_migrate_never_loads_the_models_libraries(tmp_path):
    code = """
        import os
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyteller.settings")
        import django
        django.setup()
        from django.core.management import call_command
        call_command("migrate", verbosity=0)
    """
    assert loaded_after(code, tmp_path, only=MODEL_LIBRARIES) == []


def test_the_engine_and_the_trainer_never_load_django(tmp_path):
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in sorted((ROOT / "engine").rglob("*.py"))
    ]
    assert "engine.engine" in modules and "engine.training.trainer" in modules
    code = "\n".join(f"import {name}" for name in modules)
    assert loaded_after(code, tmp_path, only=DJANGO_SIDE) == []


def test_the_scheduler_and_what_the_web_side_names_never_load_torch(tmp_path):
    code = (
        "import engine.scheduler, engine.blocks, engine.config, engine.events, engine.errors, engine.sources,"
        " engine.training.settings"
    )
    assert loaded_after(code, tmp_path, only=MODEL_LIBRARIES) == []


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """The project's modules that `module` imports anywhere in it (in a function too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            # `from generation import services` names a module; `from generation.models import X` a name.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known and name != module}
    return found


def test_no_module_imports_itself_back_through_others():
    files = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }
    graph = {module: imports_of(path, module, set(files)) for module, path in files.items()}
    assert "generation.queue" in graph["generation.services"]  # the graph sees what it should
    circles = [sorted(group) for group in strongly_connected(graph) if len(group) > 1]
    assert circles == []


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: each group of modules that reach one another."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            groups.append(group)

    for node in graph:
        if node not in index:
            visit(node)
    return groups
