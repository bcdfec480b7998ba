#!/usr/bin/env python3
"""Build and validate the ``sd_depth_texture`` Blender extension zip.

The manifest lives at the repository root and the add-on code in ``sd_depth_texture/``, but an
extension zip must hold ``blender_manifest.toml`` and ``__init__.py`` side by side at its root. This
script stages both into one temporary folder, builds the zip with Blender's own packaging tool (the
stdlib-only ``blender_ext.py`` that ships inside the ``bpy`` wheel and inside every Blender 4.2+),
validates the result with the same tool, and prints the path of every zip it wrote.

Usage::

    python build.py                              # dist/sd_depth_texture-0.1.0.zip
    python build.py --with-wheels                # + bundled dependency wheels, this platform
    python build.py --with-wheels windows-x64 linux-x64 macos-arm64
    python build.py --with-wheels --include-torch --torch-index-url URL   # local installs only

Only the standard library is used, so any Python 3.11+ can run it; ``--with-wheels`` needs pip.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger("build")

ROOT = Path(__file__).resolve().parent
MANIFEST_NAME = "blender_manifest.toml"
DEFAULT_MANIFEST = ROOT / MANIFEST_NAME
DEFAULT_PACKAGE_DIR = ROOT / "sd_depth_texture"
DEFAULT_OUTPUT_DIR = ROOT / "dist"

# Blender 4.2 to 5.0 embed CPython 3.11 (5.1+ embed 3.13). Blender refuses to install an extension
# whose wheels do not match its own Python, so a 3.11 build cannot silently break a newer Blender.
DEFAULT_PYTHON_VERSION = "3.11"

# Blender platform name -> pip ``--platform`` tags. pip expands macOS tags to older macOS versions
# by itself but not ``manylinux_2_x`` tags, so those are listed down to manylinux2014 (glibc 2.17).
# Blender 4.2+ Linux builds need glibc 2.28, hence the upper bound.
PIP_PLATFORMS: dict[str, tuple[str, ...]] = {
    "windows-x64": ("win_amd64",),
    "windows-arm64": ("win_arm64",),
    "macos-arm64": ("macosx_11_0_arm64",),
    "macos-x64": ("macosx_11_0_x86_64",),
    "linux-x64": (
        *(f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)),
        "manylinux2014_x86_64",
    ),
}
# What ``--with-wheels all`` builds. windows-arm64 is left out: with the pins below, PyYAML has no
# cp311 win_arm64 wheel, so pip cannot resolve the set for it (it can still be asked for by name).
ALL_PLATFORMS: tuple[str, ...] = ("windows-x64", "macos-arm64", "macos-x64", "linux-x64")

# What the add-on imports at run time, pinned to the versions the test-suite runs against.
# Their own dependencies (Pillow, regex, tqdm, PyYAML, hf-xet, ...) are resolved by pip.
RUNTIME_REQUIREMENTS: tuple[str, ...] = (
    "diffusers==0.42.1",
    "transformers==5.23.0",
    "huggingface_hub==2.4.0",
    "safetensors==0.8.0",
    "tokenizers==0.23.3",
)
# Optional at run time: each texture's signed C2PA manifest (c2pa-python, a compiled wheel per
# platform, and cryptography, which also makes the installation's certificate). Bundled for
# every platform the index has wheels for; a platform without them gets a zip without them
# (with a warning): the add-on then writes the text record and says the manifest was skipped.
OPTIONAL_REQUIREMENTS: tuple[str, ...] = ("c2pa-python==0.38.1", "cryptography==51.0.1")

# torch is ~750 MB installed even as a CPU build: far too big for the extensions platform, and a
# bare ``torch`` requirement resolves to the newest CUDA build on Linux (several GB). Always pinned.
TORCH_REQUIREMENT = "torch==2.13.0"

# Blender ships numpy and compiled modules built against it. Extension wheels are unpacked into a
# site-packages that Blender puts *before* its own at startup, so a bundled numpy would shadow it.
# The constraint keeps the resolved dependencies compatible with Blender's numpy (1.26.4 for the
# Python 3.11 Blenders, as pinned by the bpy 5.0.1 wheel); the numpy wheel is then left out.
BLENDER_PROVIDED_CONSTRAINTS: dict[str, tuple[str, ...]] = {"3.11": ("numpy==1.26.4",)}
DEFAULT_EXCLUDED_DISTRIBUTIONS: tuple[str, ...] = ("numpy",)

# ``pip download --platform`` evaluates environment markers against the machine running pip, not the
# target, so Windows-only dependencies (colorama, required by tqdm and click on Windows) are added
# by hand when the default requirement set is cross-downloaded.
WINDOWS_ONLY_REQUIREMENTS: tuple[str, ...] = ("colorama",)


class BuildError(Exception):
    """A failure with a one-line message meant for the user."""


# -----------------------------------------------------------------------------------------------
# Locating Blender's tools without importing bpy (importing it starts a whole Blender).


def find_bpy_scripts_dirs() -> list[Path]:
    """``bpy/<version>/scripts`` folders of the installed bpy wheel, newest version first."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return []
    found: list[Path] = []
    for location in spec.submodule_search_locations:
        for scripts in Path(location).glob("*/scripts"):
            if re.fullmatch(r"\d+\.\d+", scripts.parent.name):
                found.append(scripts)
    return sorted(
        found, key=lambda p: tuple(int(x) for x in p.parent.name.split(".")), reverse=True
    )


def find_blender_ext() -> Path:
    """Path of ``blender_ext.py`` inside the bpy wheel."""
    for scripts in find_bpy_scripts_dirs():
        candidate = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
        if candidate.is_file():
            return candidate
    raise BuildError(
        "cannot find Blender's blender_ext.py: install the bpy wheel (pip install bpy) "
        "or pass --blender-ext PATH"
    )


def tags_file_for(blender_ext: Path) -> Path | None:
    """Blender's list of valid tags that sits in the same ``scripts`` folder as ``blender_ext``."""
    # .../scripts/addons_core/bl_pkg/cli/blender_ext.py -> .../scripts
    scripts = blender_ext.resolve().parents[3]
    candidate = scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    return candidate if candidate.is_file() else None


def host_platform() -> str:
    """This machine as a Blender platform name (``linux-x64``, ``macos-arm64``, ...)."""
    system = {"darwin": "macos"}.get(platform.system().lower(), platform.system().lower())
    machine = platform.machine().lower()
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(machine, machine)
    return f"{system}-{machine}"


# -----------------------------------------------------------------------------------------------
# Running Blender's tool.


def run_blender_ext(blender_ext: Path, args: Sequence[str]) -> str:
    """Run ``blender_ext.py`` and return its output; raise with its own error message on failure."""
    cmd = [sys.executable, str(blender_ext), *args]
    log.debug("running: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        errors = [
            line.split(":", 1)[1].strip()
            for line in output.splitlines()
            if line.startswith(("FATAL_ERROR:", "ERROR:"))
        ]
        detail = "; ".join(errors) or (output.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"blender_ext.py {args[0]} failed: {detail}")
    return output


# -----------------------------------------------------------------------------------------------
# Staging.


def stage_package(package_dir: Path, manifest: Path, stage: Path) -> None:
    """Copy the add-on package and the manifest into one folder (the future zip root)."""
    if not (package_dir / "__init__.py").is_file():
        raise BuildError(
            f"{package_dir / '__init__.py'} not found: the add-on package must be a Python package"
        )
    if not manifest.is_file():
        raise BuildError(f"manifest {manifest} not found")
    shutil.copytree(
        package_dir,
        stage,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "wheels", MANIFEST_NAME),
    )
    shutil.copy2(manifest, stage / MANIFEST_NAME)
    licence = manifest.parent / "LICENSE"
    if licence.is_file() and not (stage / "LICENSE").exists():
        shutil.copy2(licence, stage / "LICENSE")


_TABLE_HEADER = re.compile(r"^\[\[?[^\[\]\n]+\]\]?[ \t]*(#.*)?$", re.MULTILINE)


def manifest_with_wheels(text: str, platforms: Sequence[str], wheels: Sequence[str]) -> str:
    """Return the manifest text with top-level ``platforms`` and ``wheels`` keys added.

    The keys go before the first table header (after it they would belong to that table); the
    result is parsed back to prove nothing else changed.
    """
    original = tomllib.loads(text)
    for key in ("platforms", "wheels"):
        if key in original:
            raise BuildError(
                f"{MANIFEST_NAME} already sets {key!r}; remove it, --with-wheels writes it"
            )
    block = (
        "# Added by build.py --with-wheels.\n"
        f"platforms = {json.dumps(list(platforms))}\n"
        "wheels = [\n" + "".join(f"  {json.dumps(w)},\n" for w in wheels) + "]\n\n"
    )
    match = _TABLE_HEADER.search(text)
    if match is None:
        new_text = text.rstrip("\n") + "\n\n" + block
    else:
        new_text = text[: match.start()] + block + text[match.start() :]
    parsed = tomllib.loads(new_text)
    if parsed.pop("platforms") != list(platforms) or parsed.pop("wheels") != list(wheels):
        raise BuildError("internal error: could not add platforms/wheels to the manifest")
    if parsed != original:
        raise BuildError("internal error: adding platforms/wheels changed other manifest keys")
    return new_text


# -----------------------------------------------------------------------------------------------
# Wheels.


def normalize_name(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """Distribution name of a requirement string such as ``torch==2.13.0``."""
    return normalize_name(re.split(r"[\s<>=!~;\[@(]", requirement.strip(), maxsplit=1)[0])


def wheel_distribution(filename: str) -> str:
    """Distribution name from a wheel filename (``tomli_w-1.2.0-py3-none-any.whl`` -> tomli-w)."""
    return normalize_name(filename.split("-", 1)[0])


def check_torch_pinned(requirements: Iterable[str]) -> None:
    """Refuse an unpinned torch: it would resolve to a multi-GB CUDA build on Linux."""
    for req in requirements:
        if requirement_name(req) == "torch" and not re.search(r"===?\s*\d", req):
            raise BuildError(
                f"torch must be pinned with == (e.g. {TORCH_REQUIREMENT}), got {req!r}"
            )


def pip_download(
    dest: Path,
    blender_platform: str,
    requirements: Sequence[str],
    *,
    python_version: str,
    constraints: Sequence[str],
    extra_index_urls: Sequence[str],
) -> None:
    """Download binary wheels of ``requirements`` and their dependencies for one platform."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--dest",
        str(dest),
    ]
    for tag in PIP_PLATFORMS[blender_platform]:
        cmd += ["--platform", tag]
    for url in extra_index_urls:
        cmd += ["--extra-index-url", url]
    if constraints:
        constraints_file = dest.parent / f"constraints-{blender_platform}.txt"
        constraints_file.write_text("\n".join(constraints) + "\n", encoding="utf-8")
        cmd += ["--constraint", str(constraints_file)]
    cmd += list(requirements)
    log.info("downloading wheels for %s: %s", blender_platform, " ".join(requirements))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = (proc.stderr + proc.stdout).strip().splitlines()
        errors = [line for line in lines if line.startswith("ERROR:")]
        detail = errors[-1] if errors else (lines[-1] if lines else f"exit code {proc.returncode}")
        raise BuildError(f"pip download for {blender_platform} failed: {detail}")


def download_wheels(
    wheels_dir: Path,
    platforms: Sequence[str],
    requirements: Sequence[str],
    *,
    python_version: str,
    exclude: Iterable[str],
    constraints: Sequence[str] = (),
    extra_index_urls: Sequence[str] = (),
    windows_extras: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> list[str]:
    """Download wheels for every platform into ``wheels_dir``; return manifest-relative paths.

    ``optional`` requirements are downloaded per platform where the index has them; where it
    has not, that platform's zip goes without them and a warning says so."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    for blender_platform in platforms:
        if optional:
            try:
                pip_download(
                    wheels_dir,
                    blender_platform,
                    list(optional),
                    python_version=python_version,
                    constraints=constraints,
                    extra_index_urls=(),
                )
            except BuildError as error:
                log.warning("%s goes without %s: %s", blender_platform, ", ".join(optional), error)
        reqs = list(requirements)
        if blender_platform.startswith("windows-"):
            reqs += list(windows_extras)
        pip_download(
            wheels_dir,
            blender_platform,
            reqs,
            python_version=python_version,
            constraints=constraints,
            extra_index_urls=extra_index_urls,
        )
    excluded = {normalize_name(name) for name in exclude}
    kept: list[str] = []
    for path in sorted(wheels_dir.iterdir()):
        if path.suffix != ".whl":
            raise BuildError(f"pip produced a non-wheel file {path.name}")
        if wheel_distribution(path.name) in excluded:
            log.info("leaving out %s (provided by Blender)", path.name)
            path.unlink()
        else:
            kept.append(f"./wheels/{path.name}")
    if not kept:
        raise BuildError("no wheels left to bundle")
    return kept


# -----------------------------------------------------------------------------------------------
# Command line.


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="build.py",
        description="Build and validate the sd_depth_texture Blender extension zip(s).",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help="where the zip(s) go (default: %(default)s)",
    )
    parser.add_argument(
        "--manifest", type=Path, default=DEFAULT_MANIFEST, help="default: %(default)s"
    )
    parser.add_argument(
        "--package-dir",
        type=Path,
        default=DEFAULT_PACKAGE_DIR,
        help="the add-on package whose contents become the zip root (default: %(default)s)",
    )
    parser.add_argument(
        "--blender-ext",
        type=Path,
        default=None,
        help="Blender's blender_ext.py (default: the one inside the installed bpy wheel)",
    )
    parser.add_argument(
        "--valid-tags",
        default=None,
        help="tags file for validation (default: Blender's tags.py next to blender_ext.py; "
        "an empty string skips the tag check)",
    )
    parser.add_argument(
        "--with-wheels",
        nargs="*",
        metavar="PLATFORM",
        default=None,
        help="bundle dependency wheels and build one zip per platform; PLATFORM is one of "
        f"{', '.join(PIP_PLATFORMS)} or 'all' (default: this machine, {host_platform()})",
    )
    parser.add_argument(
        "--package",
        dest="packages",
        action="append",
        metavar="REQUIREMENT",
        default=None,
        help="with --with-wheels: bundle this requirement instead of the default runtime set "
        "(repeatable)",
    )
    parser.add_argument(
        "--include-torch",
        action="store_true",
        help=f"with --with-wheels: also bundle {TORCH_REQUIREMENT} (hundreds of MB; for a local "
        "install from disk only, never for extensions.blender.org; this platform only)",
    )
    parser.add_argument(
        "--torch-index-url",
        action="append",
        default=[],
        metavar="URL",
        help="extra index for torch, e.g. https://download.pytorch.org/whl/cpu for a CPU-only "
        "Linux build",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=None,
        metavar="DIST",
        help="distribution to leave out of the zip (default: numpy, which Blender ships)",
    )
    parser.add_argument(
        "--python-version",
        default=DEFAULT_PYTHON_VERSION,
        help="Python of the target Blender (default: %(default)s, Blender 4.2 to 5.0)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show progress")
    args = parser.parse_args(argv)
    if args.with_wheels is None and (args.packages or args.include_torch or args.torch_index_url):
        parser.error("--package, --include-torch and --torch-index-url need --with-wheels")
    return args


def resolve_platforms(requested: Sequence[str]) -> list[str]:
    """Platforms for ``--with-wheels``: the host when none given, every known one for 'all'."""
    if not requested:
        requested = [host_platform()]
    if "all" in requested:
        return list(ALL_PLATFORMS)
    unknown = [p for p in requested if p not in PIP_PLATFORMS]
    if unknown:
        raise BuildError(
            f"unknown platform {unknown[0]!r}; choose from {', '.join(PIP_PLATFORMS)} or 'all'"
        )
    return list(dict.fromkeys(requested))


def build(args: argparse.Namespace) -> list[Path]:
    """Stage, (optionally) download wheels, build, validate; return the zips written."""
    blender_ext = args.blender_ext or find_blender_ext()
    if not blender_ext.is_file():
        raise BuildError(f"{blender_ext} not found")
    if args.valid_tags is None:
        tags = tags_file_for(blender_ext)
        if tags is None:
            raise BuildError("cannot find Blender's tags.py; pass --valid-tags PATH (or '')")
        valid_tags = str(tags)
    else:
        valid_tags = args.valid_tags

    platforms: list[str] = []
    requirements: list[str] = []
    if args.with_wheels is not None:
        platforms = resolve_platforms(args.with_wheels)
        requirements = list(args.packages or RUNTIME_REQUIREMENTS)
        if args.include_torch:
            if platforms != [host_platform()]:
                raise BuildError(
                    "--include-torch builds for this machine only "
                    f"({host_platform()}): pip evaluates torch's platform-specific "
                    "dependencies against the machine it runs on"
                )
            requirements.append(TORCH_REQUIREMENT)
        check_torch_pinned(requirements)

    output_dir: Path = args.output_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="sd_depth_texture_build_") as tmp:
        stage = Path(tmp) / "stage"
        stage_package(args.package_dir.resolve(), args.manifest.resolve(), stage)

        build_args = ["build", "--source-dir", str(stage), f"--valid-tags={valid_tags}"]
        if platforms:
            if args.include_torch:
                log.warning("bundling torch: the zip will be hundreds of MB (local install only)")
            exclude = args.exclude if args.exclude is not None else DEFAULT_EXCLUDED_DISTRIBUTIONS
            wheels = download_wheels(
                stage / "wheels",
                platforms,
                requirements,
                python_version=args.python_version,
                exclude=exclude,
                constraints=(
                    BLENDER_PROVIDED_CONSTRAINTS.get(args.python_version, ())
                    if not args.packages
                    else ()
                ),
                extra_index_urls=args.torch_index_url,
                windows_extras=WINDOWS_ONLY_REQUIREMENTS if not args.packages else (),
                optional=OPTIONAL_REQUIREMENTS if not args.packages else (),
            )
            manifest_path = stage / MANIFEST_NAME
            manifest_path.write_text(
                manifest_with_wheels(manifest_path.read_text(encoding="utf-8"), platforms, wheels),
                encoding="utf-8",
            )
            build_args.append("--split-platforms")

        built_dir = Path(tmp) / "out"
        built_dir.mkdir()
        run_blender_ext(blender_ext, [*build_args, "--output-dir", str(built_dir)])
        built = sorted(built_dir.glob("*.zip"))
        if not built:
            raise BuildError("blender_ext.py build reported success but wrote no zip")

        output_dir.mkdir(parents=True, exist_ok=True)
        results: list[Path] = []
        for zip_path in built:
            run_blender_ext(blender_ext, ["validate", str(zip_path), f"--valid-tags={valid_tags}"])
            check_zip_root(zip_path)
            target = output_dir / zip_path.name
            shutil.move(zip_path, target)
            results.append(target)
    return results


def check_zip_root(zip_path: Path) -> None:
    """Blender looks for the manifest and ``__init__.py`` together at the zip root."""
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
    for required in (MANIFEST_NAME, "__init__.py"):
        if required not in names:
            raise BuildError(f"{zip_path.name}: {required} is not at the zip root")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        zips = build(args)
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 1
    for zip_path in zips:
        print(zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
