"""The results store: one directory per run, tidy metric rows, per-sample records, a JSON run card.

    <out>/runs/<run_id>/card.json           config, provenance, timings, status
    <out>/runs/<run_id>/samples/<first>.csv per-sample records, one file per finished batch (atomic)
    <out>/runs/<run_id>/rows.csv            tidy metric rows, written once the run is complete (atomic)

Every write is atomic (temporary file + rename), so a run killed at any moment leaves only whole files: re-running
the same command finds the finished batches, computes the rest and never duplicates a sample. Runs never share a
file, and a lock per run directory keeps two processes from computing the same run at once.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from bench.core.checkpoints import atomic_write_bytes
from bench.core.config import CellConfig, safe_component
from bench.core.errors import BenchError
from bench.core.provenance import now_iso

ROW_COLUMNS = [
    "run_id", "suite", "encoder", "method", "train_eps", "task", "dataset", "attack", "protocol", "eps", "eps_str",
    "steps", "restarts", "precision", "n_samples", "metric", "value", "ci_low", "ci_high", "seed", "git_sha",
    "versions", "started_at", "seconds", "encoder_sha256", "encoder_source", "method_label", "engine_version",
    "defence", "inference_cost",
]
# columns rows written before they existed lack: read as "" (unknown, or for the test-time defence: none), filled
# from the run card where it says
LATER_COLUMNS = ["encoder_sha256", "encoder_source", "method_label", "engine_version", "defence", "inference_cost"]
# per run: which per-sample record columns are text. CSV has no types and pandas infers them per file, so without it a
# batch whose answers are all "2" or "007" would read back as the integers 2 and 7
TEXT_COLUMNS = "text_columns.json"
# read as text whatever they look like (a metric named "0", a version string "1e5")
STRING_COLUMNS = ["run_id", "suite", "encoder", "method", "train_eps", "task", "dataset", "attack", "protocol",
                  "eps_str", "precision", "metric", "git_sha", "versions", "started_at", *LATER_COLUMNS]


RESULTS_DIRECTORY = "results directory"
# what a directory that cannot be written answers: --out names a file or lies below one (ENOTDIR, EEXIST), a
# read-only mount (EROFS), a place where nothing can be created such as /proc (ENOENT from mkdir)
UNWRITABLE = (errno.ENOTDIR, errno.EEXIST, errno.EROFS, errno.ENOENT)


@contextmanager
def writing(path: Path, what: str = RESULTS_DIRECTORY):
    """Turn the OS errors of a write into one-line user errors; what was written before stays. ``what`` names the
    place being written in the message (the results directory, a report directory, a baseline file)."""
    try:
        yield
    except PermissionError as exc:
        raise BenchError(f"{what} is not writable: {path} ({exc.strerror})") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            resume = "finished batches are kept, " if what == RESULTS_DIRECTORY else ""
            raise BenchError(f"disk full while writing {path}; {resume}free space and re-run the same command"
                             + (" to resume" if resume else "")) from exc
        if exc.errno in UNWRITABLE:
            raise BenchError(f"{what} is not writable: {path} ({exc.strerror})") from exc
        raise


class Run:
    """One run directory."""

    def __init__(self, root: Path, cfg: CellConfig):
        self.cfg = cfg
        self.dir = root / "runs" / cfg.run_id
        self.samples_dir = self.dir / "samples"
        with writing(self.dir):
            self.samples_dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.dir / ".lock"))

    @contextmanager
    def locked(self, wait_seconds: float = 3600.0):
        """Exclusive use of this run; another process computing it makes us wait (then we usually find it done)."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            print(f"run {self.cfg.run_id} is being computed by another process; waiting for it", file=sys.stderr)
            try:
                self._lock.acquire(timeout=wait_seconds)
            except Timeout as exc:
                raise BenchError(f"run {self.cfg.run_id} stayed locked for {wait_seconds:.0f} s by another "
                                 f"process; remove {self.dir / '.lock'} if no other process is running") from exc
        try:
            yield self
        finally:
            self._lock.release()

    @property
    def complete(self) -> bool:
        card = self.card()
        return (self.dir / "rows.csv").is_file() and card.get("status") == "complete"

    def card(self) -> dict:
        path = self.dir / "card.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BenchError(f"corrupt run card {path}: {exc}; delete the run directory to recompute it") from exc

    def write_card(self, card: dict) -> None:
        path = self.dir / "card.json"
        with writing(path):
            atomic_write_bytes(path, (json.dumps(card, indent=2, default=str) + "\n").encode())

    def records(self) -> pd.DataFrame:
        """All per-sample records written so far (one row per sample id)."""
        return read_samples(self.dir)

    def done_ids(self) -> set[str]:
        df = self.records()
        return set(df["sample_id"]) if len(df) else set()

    def write_batch(self, records: list[dict]) -> None:
        if not records:
            return
        # the sample id comes from a dataset: made a plain file name, so it cannot add a directory or climb out
        path = self.samples_dir / f"{records[0]['index']:08d}-{safe_component(str(records[0]['sample_id']))}.csv"
        with writing(path):
            self._note_text_columns(records)
            atomic_write_bytes(path, csv_bytes(pd.DataFrame(records)))

    def _note_text_columns(self, records: list[dict]) -> None:
        """Remember which record columns hold text (before the batch is written), so that they read back as text."""
        text = {k for r in records for k, v in r.items() if isinstance(v, str)}
        known = set(text_columns(self.dir))
        if not text <= known:
            atomic_write_bytes(self.dir / TEXT_COLUMNS, json.dumps(sorted(known | text)).encode())

    def finish(self, rows: list[dict], card: dict) -> pd.DataFrame:
        df = pd.DataFrame(rows, columns=ROW_COLUMNS)
        path = self.dir / "rows.csv"
        with writing(path):
            atomic_write_bytes(path, csv_bytes(df))
        self.write_card({**card, "status": "complete", "finished_at": now_iso()})
        return df

    def rows(self) -> pd.DataFrame:
        return read_rows(self.dir / "rows.csv")


def text_columns(run_dir: Path) -> list[str]:
    """The record columns a run wrote as text (none known for runs stored before this was recorded)."""
    path = Path(run_dir) / TEXT_COLUMNS
    try:
        return list(json.loads(path.read_text())) if path.is_file() else []
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"corrupt file {path}: {exc}; delete it (records are then read with inferred types)") from exc


def read_samples(run_dir: Path) -> pd.DataFrame:
    """The per-sample records stored under ``run_dir`` (one row per sample id; empty when it has none), each column
    with the type it was written with: text columns are read as text even where every value of a file looks like a
    number (a batch of count answers "2", "3"; "007")."""
    dtypes = {"sample_id": str, **dict.fromkeys(text_columns(run_dir), str)}
    frames = []
    for path in sorted((Path(run_dir) / "samples").glob("*.csv")):
        try:
            frames.append(pd.read_csv(path, keep_default_na=False, dtype=dtypes))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise BenchError(f"corrupt per-sample file {path}: {exc}; delete it to recompute that batch") from exc
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).drop_duplicates("sample_id", keep="first")


def csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV that reads back as written. Lines end in CRLF (RFC 4180) because the writer quotes a field only if it
    holds a character of the line ending, and pandas' reader takes a bare carriage return inside an unquoted field
    (a generated caption can hold one) for the end of the line."""
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\r\n")
    return buf.getvalue().encode()


def read_rows(path: Path) -> pd.DataFrame:
    try:
        rows = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=dict.fromkeys(STRING_COLUMNS, str))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BenchError(f"corrupt results file {path}: {exc}") from exc
    for column in LATER_COLUMNS:
        rows[column] = rows[column].fillna("") if column in rows.columns else ""
    known = [c for c in ROW_COLUMNS if c in rows.columns]
    return rows[known + [c for c in rows.columns if c not in known]]  # the schema's order, whatever the file's


def card_checkpoint(card: dict) -> tuple[str, str]:
    """(encoder sha256, encoder source) a run card records; ("", "") when it records none (a derived run)."""
    encoder = card.get("encoder") if isinstance(card.get("encoder"), dict) else {}
    config = card.get("config") if isinstance(card.get("config"), dict) else {}
    sha = config.get("encoder_sha256") or encoder.get("checkpoint_sha256") or ""
    return str(sha), str(encoder.get("source") or "")


class Store:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def check_writable(self) -> None:
        """Fail now, in one line, if runs cannot be written under the root, rather than after an encoder was loaded
        or trained: create the runs directory as the first run would, and a file in it."""
        runs = self.root / "runs"
        with writing(self.root):
            runs.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=runs):
                pass

    def run(self, cfg: CellConfig) -> Run:
        return Run(self.root, cfg)

    def existing(self, cfg: CellConfig) -> Run | None:
        """The run of ``cfg`` if anything of it is stored, without creating its directory."""
        return Run(self.root, cfg) if (self.root / "runs" / cfg.run_id).is_dir() else None

    def write_derived(self, run_id: str, card: dict, rows: list[dict]) -> pd.DataFrame:
        """A run computed from other runs' rows (e.g. a cross-cell sanity check): its card and rows, no samples.
        One already stored with the same content (timestamps and code version aside) is kept as it is."""
        path = self.root / "runs" / safe_component(run_id)
        if (path / "rows.csv").is_file() and (path / "card.json").is_file():
            try:
                stored = json.loads((path / "card.json").read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                stored = {}
            volatile = ("started_at", "finished_at", "git_sha")
            if all(stored.get(k) == v for k, v in card.items() if k not in volatile):
                return read_rows(path / "rows.csv")
        df = pd.DataFrame(rows, columns=ROW_COLUMNS)
        with writing(path):
            path.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path / "rows.csv", csv_bytes(df))
            atomic_write_bytes(path / "card.json", (json.dumps(card, indent=2, default=str) + "\n").encode())
        return df

    def run_dirs(self) -> list[Path]:
        runs = self.root / "runs"
        return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []

    def rows(self) -> pd.DataFrame:
        """Rows of every complete run under the store; rows written before the checkpoint columns existed get them
        from their run card, so that reports key every row on (encoder, checkpoint)."""
        frames = []
        for d in self.run_dirs():
            if (d / "rows.csv").is_file():
                frame = read_rows(d / "rows.csv")
                if (frame["encoder_sha256"] == "").any() or (frame["engine_version"] == "").any():
                    frame = _with_card_checkpoint(frame, d / "card.json")
                frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=ROW_COLUMNS)
        return pd.concat(frames, ignore_index=True)


def _read_card_quietly(path: Path) -> dict:
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}  # rows stay readable without their card; the checkpoint is then unknown ("")
    return card if isinstance(card, dict) else {}


def _with_card_checkpoint(frame: pd.DataFrame, card_path: Path) -> pd.DataFrame:
    card = _read_card_quietly(card_path)
    if card.get("cells") and "config" not in card:  # a derived run (sanity sweep): its checked cell's checkpoint
        card = _read_card_quietly(card_path.parent.parent / safe_component(str(card["cells"][-1])) / "card.json")
    sha, source = card_checkpoint(card)
    missing = frame["encoder_sha256"] == ""
    frame.loc[missing, "encoder_sha256"] = sha
    frame.loc[missing & (frame["encoder_source"] == ""), "encoder_source"] = source
    config = card.get("config") if isinstance(card.get("config"), dict) else {}
    frame.loc[frame["engine_version"] == "", "engine_version"] = str(config.get("engine_version") or "")
    return frame
