"""OCI images without a Docker engine: Debian's buildah and podman, confined to one work directory.

Storage, configuration and temporary files live under a :class:`ContainerWorkspace` directory,
so nothing touches ``/var/lib/containers`` and a throw-away workspace goes with its directory.
The recipe is the one measured in issue 7 (docs/deployment.md, "The container image"):

- podman needs ``runtime = "runc"`` (crun fails on this cgroup set-up), ``cgroup_manager =
  "cgroupfs"``, ``netns = "host"`` and ``default_ulimits`` no higher than the hard limits
  (``nproc`` no higher than ``kernel.pid_max``).
- The base image cannot be pulled (no registry here). A stand-in is made with ``debootstrap``
  (Debian bookworm, whose ``python3`` is 3.11, like the bento), trusting the host's CA
  certificates so that installs inside the build reach the package registry the way the host
  does, and tagged as the image BentoML's generated Dockerfile names (:data:`BASE_IMAGE`).
  With Docker and a registry, none of this is needed: plain ``bentoml containerize`` pulls it.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORK_DIR = REPO_ROOT / ".work" / "containers"
"""Persistent workspace for ``make containerize`` (gitignored); tests use a temporary one."""
BASE_CACHE_DIR = REPO_ROOT / ".work" / "cache"
"""Where the base rootfs tarball is kept between runs (outside every workspace)."""
BASE_IMAGE = "docker.io/library/python:3.11-slim"
"""The base BentoML 1.4.39 names for ``distro: debian`` and ``python_version: "3.11"``."""
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
CONTAINER_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    # bookworm marks its python3 "externally managed"; the official image's python is not.
    "PIP_BREAK_SYSTEM_PACKAGES": "1",
    # uv (used by the generated Dockerfile) trusts its own CA bundle unless told otherwise.
    "SSL_CERT_FILE": CONTAINER_CA_BUNDLE,
}
REQUIRED_TOOLS = ("buildah", "podman", "debootstrap", "runc")
APT_PACKAGES = (
    "buildah",
    "podman",
    "debootstrap",
    "runc",
    "uidmap",
    "containers-storage",
    "netavark",
)


class ContainerToolError(RuntimeError):
    """A buildah/podman/debootstrap step failed; the message holds the command and its output."""


def missing_tools() -> list[str]:
    """The container tools (:data:`REQUIRED_TOOLS`) not found on ``PATH``."""
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def unavailable_reason() -> str | None:
    """Why real images cannot be built and run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (rootful buildah/podman, debootstrap)"
    missing = missing_tools()
    if missing:
        return f"missing {', '.join(missing)}: apt-get install -y {' '.join(APT_PACKAGES)}"
    return None


def run_command(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; on failure raise :class:`ContainerToolError` with its output's tail."""
    try:
        completed = subprocess.run(
            list(command),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ContainerToolError(f"{' '.join(command)} ran past {timeout_s:.0f} s") from exc
    if check and completed.returncode != 0:
        output = (completed.stdout + completed.stderr)[-4000:]
        raise ContainerToolError(
            f"{' '.join(command)} failed with exit code {completed.returncode}:\n{output}"
        )
    return completed


def _ulimits() -> list[str]:
    """Container ulimits at the hard limits (``nproc`` capped by ``kernel.pid_max``)."""
    _, nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nofile = nofile_hard if nofile_hard != resource.RLIM_INFINITY else 1_048_576
    nproc = pid_max if nproc_hard == resource.RLIM_INFINITY else min(nproc_hard, pid_max)
    return [f"nofile={nofile}:{nofile}", f"nproc={nproc}:{nproc}"]


@dataclass(frozen=True)
class ContainerWorkspace:
    """Storage, configuration and temporary files of buildah/podman under ``root``."""

    root: Path
    storage_driver: str = "overlay"

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def storage_dir(self) -> Path:
        return self.root / "storage"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def configure(self) -> dict[str, str]:
        """Write ``storage.conf`` and ``containers.conf``; return the environment that uses them.

        Pass the returned mapping as ``env`` to every buildah, podman and ``bentoml
        containerize`` call.
        """
        for directory in (self.config_dir, self.storage_dir, self.tmp_dir, self.root / "run"):
            directory.mkdir(parents=True, exist_ok=True)
        storage_conf = self.config_dir / "storage.conf"
        storage_conf.write_text(
            "[storage]\n"
            f'driver = "{self.storage_driver}"\n'
            f'graphroot = "{self.storage_dir}"\n'
            f'runroot = "{self.root / "run"}"\n'
        )
        containers_conf = self.config_dir / "containers.conf"
        containers_conf.write_text(
            "[containers]\n"
            'netns = "host"\n'
            f"default_ulimits = {json.dumps(_ulimits())}\n"
            "\n[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'tmp_dir = "{self.root / "run" / "libpod"}"\n'
            "\n[network]\n"
            'network_backend = "netavark"\n'
            # `podman system reset` (destroy) removes all networks: keep it off the system's.
            f'network_config_dir = "{self.root / "networks"}"\n'
        )
        return {
            **os.environ,
            "CONTAINERS_STORAGE_CONF": str(storage_conf),
            "CONTAINERS_CONF": str(containers_conf),
            "TMPDIR": str(self.tmp_dir),
            "BUILDAH_ISOLATION": "chroot",
        }

    def podman(self, *args: str, timeout_s: float = 300, check: bool = True) -> str:
        """Run ``podman ARGS`` in this workspace; return its stdout."""
        completed = run_command(
            ["podman", *args], env=self.configure(), timeout_s=timeout_s, check=check
        )
        return completed.stdout

    def image_exists(self, image: str) -> bool:
        completed = run_command(
            ["podman", "image", "exists", image], env=self.configure(), check=False
        )
        return completed.returncode == 0

    def destroy(self) -> None:
        """Remove every container and image of this workspace, unmount its storage, delete it."""
        if self.root.exists():
            env = self.configure()
            run_command(["podman", "rm", "--all", "--force", "--time", "0"], env=env, check=False)
            run_command(["buildah", "rm", "--all"], env=env, check=False)
            run_command(["podman", "system", "reset", "--force"], env=env, check=False)
            run_command(["umount", "--recursive", "--lazy", str(self.storage_dir)], check=False)
            shutil.rmtree(self.root, ignore_errors=True)


def _host_ca_certificates() -> list[Path]:
    return sorted(HOST_CA_DIR.rglob("*.crt")) if HOST_CA_DIR.is_dir() else []


def base_rootfs_key() -> str:
    """Short hash of what the stand-in rootfs is made of (suite, packages, host CA certs)."""
    digest = hashlib.sha256(f"{DEBIAN_SUITE}|{DEBIAN_MIRROR}|{BASE_PACKAGES}".encode())
    for certificate in _host_ca_certificates():
        digest.update(certificate.read_bytes())
    return digest.hexdigest()[:12]


def build_base_rootfs(cache_dir: Path, *, timeout_s: float = 900) -> Path:
    """The stand-in base's rootfs tarball, made with debootstrap once and cached in ``cache_dir``.

    Debian ``bookworm`` minbase + :data:`BASE_PACKAGES`, the host's extra CA certificates
    installed with ``update-ca-certificates``, a ``python`` command (as in the official image),
    apt caches removed. The file name holds :func:`base_rootfs_key`, so a change of any input
    makes a new one.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"{DEBIAN_SUITE}-python3-rootfs-{base_rootfs_key()}.tar"
    if tarball.is_file():
        return tarball
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        run_command(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                DEBIAN_SUITE,
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            timeout_s=timeout_s,
        )
        target_ca_dir = rootfs / HOST_CA_DIR.relative_to("/")
        target_ca_dir.mkdir(parents=True, exist_ok=True)
        for certificate in _host_ca_certificates():
            (target_ca_dir / certificate.name).write_bytes(certificate.read_bytes())
        run_command(["chroot", str(rootfs), "update-ca-certificates"])
        run_command(["chroot", str(rootfs), "apt-get", "clean"])
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        partial = tarball.with_suffix(".partial")
        run_command(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."]
        )
        partial.rename(tarball)
    return tarball


def import_base_image(
    workspace: ContainerWorkspace, tarball: Path, *, image: str = BASE_IMAGE
) -> None:
    """``podman import`` the rootfs tarball as ``image`` with the official image's environment."""
    changes = [f"ENV {name}={value}" for name, value in BASE_IMAGE_ENV.items()]
    changes.append('CMD ["python3"]')
    command = ["podman", "import"]
    for change in changes:
        command += ["--change", change]
    run_command([*command, str(tarball), image], env=workspace.configure(), timeout_s=600)


def ensure_base_image(
    workspace: ContainerWorkspace, cache_dir: Path, *, image: str = BASE_IMAGE
) -> bool:
    """Make ``image`` available in ``workspace``; returns True when it had to be imported."""
    if workspace.image_exists(image):
        return False
    import_base_image(workspace, build_base_rootfs(cache_dir), image=image)
    return True


def image_size_bytes(workspace: ContainerWorkspace, image: str) -> int:
    """Uncompressed size of ``image`` as podman reports it."""
    return int(workspace.podman("image", "inspect", "--format", "{{.Size}}", image).strip())


def main(argv: list[str] | None = None) -> int:
    """``python -m scripts.container_tools``: make the stand-in base image in a workspace."""
    import argparse
    import time

    parser = argparse.ArgumentParser(
        description=f"Debootstrap (cached) and import the stand-in {BASE_IMAGE} into a workspace."
    )
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"cannot build images here: {reason}")
        return 1
    workspace = ContainerWorkspace(args.work_dir)
    started = time.monotonic()
    imported = ensure_base_image(workspace, BASE_CACHE_DIR)
    seconds = time.monotonic() - started
    state = f"made and imported in {seconds:.0f} s" if imported else "already there"
    print(f"{BASE_IMAGE} in {args.work_dir}: {state}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
