"""libFuzzer on the native transcoder, briefly (``make soak`` runs it for FUZZ_SECONDS on a corpus it
keeps, FUZZ_CORPUS), then its corpus replayed through the Python module against protobuf and the
reference.

libFuzzer explores the Rust code by coverage (scripts/fuzz_transcoder.py: overflow checks and
debug assertions on, invariants asserted in native/fuzz); a panic or a broken invariant fails the
run. Every input it kept is then transcoded in this process and must raise ``TranscodeError``
exactly when ``FromString`` fails, and equal the reference otherwise (the process survives them
all: no crash, no corruption). Needs cargo and a C++ compiler (for libFuzzer): present on every
machine of this kind; missing under CI is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_transcoder import assert_same_as_reference

REPO = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("FUZZ_SECONDS", "20"))
# make soak keeps a corpus from run to run (FUZZ_CORPUS); make test starts from the seeds.
CORPUS = os.environ.get("FUZZ_CORPUS")
REPLAY_LIMIT = 50_000


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 900)
def test_libfuzzer_finds_nothing_and_its_corpus_matches_the_reference(tmp_path: Path) -> None:
    missing = [tool for tool in ("cargo", "rustc", "c++") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"fuzzing needs {', '.join(missing)} (on every machine of this kind)")
        pytest.skip(f"fuzzing needs {', '.join(missing)}")
    corpus = Path(CORPUS) if CORPUS else tmp_path / "corpus"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "fuzz_transcoder.py"),
            "--seconds",
            str(SECONDS),
            "--corpus",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print(summary)
    assert result.returncode == 0, f"{summary}\n{result.stderr[-4000:]}"
    runs = int(summary.split()[1])
    assert runs > 1000, summary
    inputs = sorted(corpus.iterdir())[:REPLAY_LIMIT]
    assert len(inputs) > 5  # the seeds, and what libFuzzer added
    for path in inputs:
        assert_same_as_reference(path.read_bytes())
