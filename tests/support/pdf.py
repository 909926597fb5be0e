"""PDF helpers shared by the format tests and the relying-party tests: a blank PDF to sign, and poppler's
pdfsig (an independent verifier) against an NSS database that trusts the test root."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PdfFileWriter


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run an external verifier; a clear failure (not a skip) when it is not installed."""
    tool = args[0]
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed (scripts/test-deps.sh installs it)", pytrace=False)
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def blank_pdf() -> bytes:
    """A one-page A4 PDF with nothing on it."""
    writer = PdfFileWriter()
    writer.insert_page(generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Page"),
        generic.NameObject("/MediaBox"): generic.ArrayObject([generic.NumberObject(n) for n in (0, 0, 595, 842)]),
    }))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def nss_db(root_pem: Path, tmp_path: Path) -> str:
    """A fresh NSS database under ``tmp_path`` trusting ``root_pem``; returns its ``sql:`` name."""
    db = tmp_path / "nssdb"
    db.mkdir()
    assert run_tool("certutil", "-N", "-d", f"sql:{db}", "--empty-password").returncode == 0
    assert run_tool("certutil", "-A", "-d", f"sql:{db}", "-n", "test-root", "-t", "CT,C,C", "-i",
                    str(root_pem)).returncode == 0
    return f"sql:{db}"


def pdfsig(nss: str, pdf: Path) -> str:
    """pdfsig's report on ``pdf``; the exit code says nothing, so callers read the text."""
    result = run_tool("pdfsig", "-nssdir", nss, str(pdf))
    return result.stdout + result.stderr
