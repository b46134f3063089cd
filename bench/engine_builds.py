"""The engine benchmark's one-time, opt-in set-ups, each cached under .cache/ (which git ignores).

- ``.cache/bench-venv`` (``--setup-llama-cpp-python``): llama-cpp-python's server extras, in a venv
  that sees the main venv's packages through a ``.pth`` file.

The llama.cpp builds come from the sources vendored in the llama-cpp-python sdist that Slipstream
pins, so they run the same code as Slipstream's runner:

- ``.cache/llama-server/`` (``--build-llama-server``): a static llama-server built with the flags
  ``scripts/engine_cmake_args.py`` prints, the ones ``make`` builds llama-cpp-python with (no
  ``-march=native``: see issue 8). One place decides the flags, so the comparison stays fair.
- ``.cache/llama-native/`` (``--native-baseline``): the build as it was before that change,
  ``-DGGML_NATIVE=ON`` (``-march=native``), as shared libraries (libllama.so, libggml*.so, with an
  RPATH of ``$ORIGIN`` so that libllama finds its libggml beside it) plus a llama-server linked to
  them. The ``slipstream-native`` contender runs Slipstream's runner on copies of these libraries
  (engine_contenders.py), so one interleaved run measures the price of the portable build.

Each directory holds a ``build.json`` naming the CMake arguments it was built with; a build whose
arguments differ from today's is rebuilt, and the contenders copy that record into the results.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path
from typing import Any

from benchlib import CACHE_DIR, REPO_ROOT

LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # the version pyproject.toml pins; its sdist vendors llama.cpp
LLAMA_SERVER_DIR = CACHE_DIR / "llama-server"
NATIVE_DIR = CACHE_DIR / "llama-native"
BENCH_VENV = CACHE_DIR / "bench-venv"
# llama-cpp-python[server] extras, without their own dependencies (the main venv has those).
SERVER_EXTRAS = [
    "sse-starlette==3.7.0",
    "starlette-context==0.3.6",
    "pydantic-settings==2.16.3",
    "python-dotenv==1.2.4",
]
BUILD_RECORD = "build.json"
CMAKE_ARGS_SCRIPT = REPO_ROOT / "scripts" / "engine_cmake_args.py"
NATIVE_CMAKE_ARGS = ["-DGGML_NATIVE=ON"]  # how the engine was compiled before issue 8
COMMON_CMAKE_ARGS = ["-DLLAMA_CURL=OFF", "-DCMAKE_BUILD_TYPE=Release"]
# Shared libraries find each other beside themselves, wherever the directory is copied to.
SHARED_CMAKE_ARGS = ["-DBUILD_SHARED_LIBS=ON", "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON", "-DCMAKE_INSTALL_RPATH=$ORIGIN"]
STATIC_CMAKE_ARGS = ["-DBUILD_SHARED_LIBS=OFF"]  # one self-contained binary


def portable_cmake_args() -> list[str]:
    """The ISA flags every build of the engine uses: whatever scripts/engine_cmake_args.py prints."""
    out = subprocess.run([sys.executable, str(CMAKE_ARGS_SCRIPT)], capture_output=True, text=True, check=True)
    return out.stdout.split()


def vendored_llama_cpp() -> Path:
    """The llama.cpp tree inside the pinned llama-cpp-python sdist (downloaded and unpacked once)."""
    src_dir = CACHE_DIR / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    sdist = src_dir / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", str(src_dir)],
            check=True,
        )  # fmt: skip
    tree = src_dir / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}"
    if not tree.exists():
        with tarfile.open(sdist) as tar:
            tar.extractall(src_dir, filter="data")
    return tree / "vendor" / "llama.cpp"


def build_record(directory: Path) -> dict[str, Any] | None:
    """What ``directory`` was built with (its build.json), or None for no record."""
    try:
        record: dict[str, Any] = json.loads((directory / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record


def wanted_record(isa_args: list[str], shared: bool) -> dict[str, Any]:
    link = SHARED_CMAKE_ARGS if shared else STATIC_CMAKE_ARGS
    return {
        "llama_cpp_python_sdist": LLAMA_CPP_PYTHON_VERSION,
        "isa_cmake_args": isa_args,
        "cmake_args": [*COMMON_CMAKE_ARGS, *isa_args, *link],
        "shared_libs": shared,
    }


def build_llama_cpp(dest: Path, isa_args: list[str], *, shared: bool, targets: list[str], jobs: int) -> Path:
    """Build ``targets`` into ``dest`` unless it already holds a build with these arguments."""
    want = wanted_record(isa_args, shared)
    record = build_record(dest)
    if record is not None and record.get("cmake_args") == want["cmake_args"] and (dest / "llama-server").exists():
        return dest / "llama-server"
    llama_cpp = vendored_llama_cpp()
    build = llama_cpp / f"build-{dest.name}"
    shutil.rmtree(build, ignore_errors=True)  # a fresh configure: no option left over from other flags
    print(f"building {', '.join(targets)} into {dest} with {' '.join(want['cmake_args'])}", file=sys.stderr, flush=True)
    subprocess.run(["cmake", "-S", str(llama_cpp), "-B", str(build), *want["cmake_args"]], check=True)
    subprocess.run(["cmake", "--build", str(build), "--target", *targets, f"-j{jobs}"], check=True)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for item in (build / "bin").iterdir():  # the binary, and every shared library beside it
        if item.name == "llama-server" or ".so" in item.name:
            shutil.copy2(item, dest / item.name, follow_symlinks=False)
    (dest / BUILD_RECORD).write_text(json.dumps(want, indent=2) + "\n")
    return dest / "llama-server"


def build_llama_server(jobs: int = 2) -> Path:
    """A static llama-server in .cache/llama-server/, compiled with the engine's own flags."""
    return build_llama_cpp(LLAMA_SERVER_DIR, portable_cmake_args(), shared=False, targets=["llama-server"], jobs=jobs)


def build_native_baseline(jobs: int = 2) -> Path:
    """libllama.so, libggml*.so and a llama-server linked to them, -march=native, in .cache/llama-native/."""
    return build_llama_cpp(NATIVE_DIR, NATIVE_CMAKE_ARGS, shared=True, targets=["llama", "llama-server"], jobs=jobs)


def find_llama_server() -> Path | None:
    """LLAMA_SERVER_BIN, else the build in .cache/llama-server/ (the engine's flags), else the PATH."""
    env = os.environ.get("LLAMA_SERVER_BIN")
    if env:
        return Path(env)
    built = LLAMA_SERVER_DIR / "llama-server"
    if built.exists():
        return built
    on_path = shutil.which("llama-server")
    return Path(on_path) if on_path else None


def llama_server_version(binary: Path) -> str | None:
    env = {**os.environ, "LD_LIBRARY_PATH": str(binary.parent)}
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout + out.stderr).strip().splitlines()
    return next((line for line in text if line.startswith("version")), text[0] if text else None)


# --------------------------------------------------------------------------- llama-cpp-python's server


def bench_venv_python() -> Path:
    return BENCH_VENV / "bin" / "python"


def setup_llama_cpp_python_server() -> Path:
    """Create .cache/bench-venv: the server extras only, plus a .pth to the main venv's packages."""
    python = bench_venv_python()
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", *SERVER_EXTRAS],
        check=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    main_paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (Path(site) / "_slipstream_main_venv.pth").write_text("\n".join(main_paths) + "\n")
    subprocess.run([str(python), "-c", "import llama_cpp.server.app"], check=True)
    return python


# --------------------------------------------------------------------------- which libraries a process runs


def mapped_llama_libs(pid: int) -> list[str]:
    """The libllama*/libggml* files process ``pid`` has mapped (real paths, from /proc/<pid>/maps)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    paths = {line.split(maxsplit=5)[5] for line in maps.splitlines() if len(line.split(maxsplit=5)) == 6}
    return sorted(p for p in paths if Path(p).name.startswith(("libllama", "libggml")))


def check_mapped_libs(libs: list[str], expected_dir: Path) -> None:
    """Raise RuntimeError unless libllama and libggml-cpu are mapped, and only from ``expected_dir``."""
    names = [Path(p).name for p in libs]
    wrong = [p for p in libs if Path(p).parent != expected_dir.resolve()]
    missing = [want for want in ("libllama", "libggml-cpu") if not any(n.startswith(want) for n in names)]
    if wrong or missing:
        raise RuntimeError(f"expected llama.cpp libraries from {expected_dir}; mapped {libs} (missing: {missing})")


def llama_system_info(env: dict[str, str]) -> str | None:
    """llama_print_system_info() of the libraries llama-cpp-python loads with ``env``: what they were built for."""
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[-1] if out.returncode == 0 and lines else None
