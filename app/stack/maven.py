"""Fetch a service's jars from Maven Central into the stack's jar cache (once per version).

Triggered by ``streamfit stack up`` before Kafka or Cassandra first starts. The POMs ship in
``app/stack/poms/<service>/pom.xml``; the version comes from the settings.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from app.stack.process import StackError

POM_DIR = Path(__file__).parent / "poms"


def install_jars(service: str, version_property: str, version: str, cache_dir: Path) -> Path:
    """Copy ``service``'s runtime closure at ``version`` into ``cache_dir/<service>-<version>/lib``.

    Idempotent: a completed lib directory (marked by ``.complete``) is reused as is. The copy goes
    to a temporary directory first, so an interrupted download never looks complete.
    """
    target = cache_dir / f"{service}-{version}"
    lib = target / "lib"
    marker = target / ".complete"
    if marker.exists() and lib.is_dir():
        return lib
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is not on PATH: install Maven 3 (e.g. apt-get install maven)")
    tmp = target / "lib.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [
        "mvn", "-B", "-q", "-f", str(POM_DIR / service / "pom.xml"),
        "dependency:copy-dependencies", "-DincludeScope=runtime",
        f"-D{version_property}={version}", f"-DoutputDirectory={tmp}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    jars = list(tmp.glob("*.jar"))
    if proc.returncode != 0 or not jars:
        output = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise StackError(
            f"Maven could not resolve {service} {version} from Maven Central "
            f"(exit {proc.returncode}):\n" + "\n".join(output)
        )
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    marker.write_text(version + "\n")
    return lib
