"""Past one machine: the same steps on Dask (``--engine dask``), partition by partition.

Leads, touch points and outcomes are **co-partitioned by lead**: a row goes to partition
``hash(str(lead_id)) mod n`` (pandas' stable 64-bit hash, :func:`pandas.util.hash_pandas_object`), through a
Dask shuffle with known divisions, so partition ``k`` of every table holds the same leads. Each partition is
then validated, featured and scored by today's single-machine functions, unchanged (:func:`build_features`,
:func:`training.score.score_chunks`): a lead's features only read that lead's rows, so the results are
those of the local engine, row for row. Nothing is merged across partitions.

Demo data are written as folders of Parquet part files (``leads/``, ``touchpoints/``, ``outcomes/``), one
part per generated chunk, by the workers: the same rows as the local engine's files, never held in one process.

The cluster is the one at ``--scheduler`` / ``LEADSCORE_DASK_SCHEDULER``; else a ``LocalCluster`` of one
single-threaded worker process per core, sharing 80% of the machine's memory. The dashboard's address is said.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from training.data import CRMData, DataIssue, DataValidationError, ValidationReport

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

    from models.scoring_model import GradeCutoffs, ScoringModel

TABLES = ("leads", "touchpoints", "outcomes")
PARTITION = "_partition"
# a lead's place in the leads table as read (part file, then row): the local engine's order of leads, which
# the training examples are put back in (training/dask_training.py) so that the fit sees the same rows in the
# same order as on the local engine (LightGBM's bagging draws rows by position)
ORDER = "_file_order"


def _with_order(part: pd.DataFrame, partition_info: dict[str, Any] | None = None) -> pd.DataFrame:
    number = 0 if partition_info is None else int(partition_info["number"])
    return part.assign(**{ORDER: np.int64(number) * np.int64(2**32) + np.arange(len(part), dtype=np.int64)})


def in_file_order(frames: dict[str, dd.DataFrame]) -> dict[str, dd.DataFrame]:
    """Every table with :data:`ORDER`, its rows' place as read: the shuffle by lead mixes a partition's rows,
    and validation keeps the first row of a repeated id (lead, touch, outcome) as the local engine does, the
    first in the files (:func:`validated_partition` sorts by it)."""
    return {name: f.map_partitions(_with_order, meta=_with_order(f._meta)) for name, f in frames.items()}


def _in_file_order(frame: pd.DataFrame, keep: bool) -> pd.DataFrame:
    if ORDER not in frame.columns:
        return frame
    frame = frame.sort_values(ORDER, kind="stable")
    return frame if keep else frame.drop(columns=[ORDER])


class ClusterUnavailable(RuntimeError):
    """The Dask scheduler given cannot be reached (the message names it)."""


@contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    say: Callable[[str], None] = lambda _: None,
    connect_timeout: float = 30.0,
) -> Iterator[Client]:
    """A client of the cluster at ``scheduler`` (``tcp://host:8786``), else of a new ``LocalCluster`` on
    loopback: ``workers`` processes (default: one per core) of one thread each, sharing 80% of the memory.
    ``say`` gets the dashboard's address. The local cluster is closed on exit.

    Raises:
        ClusterUnavailable: no scheduler answers at ``scheduler`` within ``connect_timeout`` seconds.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=connect_timeout)
        except (OSError, TimeoutError, ValueError) as err:
            raise ClusterUnavailable(f"cannot reach the Dask scheduler at {scheduler!r}: {err}") from err
        cluster = None
    else:
        import psutil

        n = workers or os.cpu_count() or 1
        memory = int(psutil.virtual_memory().total * 0.8 / n)
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            memory_limit=memory,
            dashboard_address="127.0.0.1:0",
        )
        client = Client(cluster)
    say(f"Dask dashboard: {client.dashboard_link}")
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ---- data: partitioned Parquet in, co-partitioned frames --------------------------------------------------
def read_tables(data_dir: Path) -> dict[str, dd.DataFrame]:
    """The data directory's tables as Dask frames (touchpoints only when present).

    Each table's part files are checked first, from their footers only: each must be readable Parquet with
    the columns and types of the table's first part (Dask takes a table's schema from one part, and its
    shuffle cannot join parts of different types), and a folder must hold at least one part.

    Raises:
        DataValidationError: ``data_dir`` is not a directory; leads or outcomes are missing; a table is there
            twice (``leads/`` and ``leads.parquet``) or in another format (the Dask engine reads Parquet, a
            single file or a folder of parts; other formats go through the local engine); a part file is
            unreadable or its columns or types differ from the first part's (the file and column are named), or a
            table has a column named as the engine's own (``_partition``, ``_file_order``).
    """
    import dask.dataframe as dd

    from training.data import find_table

    if not data_dir.is_dir():
        raise DataValidationError(
            [DataIssue(str(data_dir), None, None, "the Dask engine reads a data directory of Parquet tables")]
        )
    frames = {}
    for name in TABLES:
        path = find_table(data_dir, name, required=False)
        if path is None and name != "touchpoints":
            raise DataValidationError(
                [DataIssue(str(data_dir), None, None, f"no {name}/ folder of Parquet parts or {name}.parquet")]
            )
        if path is None:
            continue
        if not path.is_dir() and path.suffix.lower() != ".parquet":
            raise DataValidationError(
                [
                    DataIssue(
                        str(path),
                        None,
                        None,
                        "the Dask engine reads Parquet tables (a file or a folder of part files); this table goes "
                        "through the local engine (leave out --engine dask)",
                    )
                ]
            )
        check_parts(path)
        frames[name] = dd.read_parquet(str(path))
        reserved = [c for c in (PARTITION, ORDER) if c in frames[name].columns]
        if reserved:  # the engine's own columns: a user's would be overwritten
            raise DataValidationError(
                [
                    DataIssue(str(path), None, c, "this column name is the Dask engine's own: rename the column")
                    for c in reserved
                ]
            )
    return frames


def check_parts(path: Path) -> None:
    """Refuse a table whose Parquet part files Dask cannot read as one: none, unreadable, or columns and types
    unlike the first part's. Reads the footers only.

    Raises:
        DataValidationError: naming the part file and the column.
    """
    import pyarrow.parquet as pq

    parts = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not parts:
        raise DataValidationError([DataIssue(str(path), None, None, "a folder with no .parquet part files")])
    first: tuple[Path, dict[str, str]] | None = None
    for part in parts:
        try:
            schema = pq.read_schema(part)
        except (OSError, ValueError) as err:
            raise DataValidationError(
                [DataIssue(str(part), None, None, f"not a readable Parquet file ({err})")]
            ) from err
        types = {str(f.name): str(f.type) for f in schema if not str(f.name).startswith("__index_level_")}
        if first is None:
            first = (part, types)
            continue
        where, expected = first
        unlike = "; the Dask engine needs one schema in all part files of a table (the local engine reads them)"
        for column in [c for c in expected if c not in types] + [c for c in types if c not in expected]:
            here, there = ("missing", "present") if column not in types else ("present", "missing")
            reason = f"column {here} in this part but {there} in {where.name}{unlike}"
            raise DataValidationError([DataIssue(str(part), None, column, reason)])
        for column, kind in types.items():
            if kind != expected[column]:
                raise DataValidationError(
                    [
                        DataIssue(
                            str(part), None, column, f"type {kind} here but {expected[column]} in {where.name}{unlike}"
                        )
                    ]
                )


def partition_of(lead_ids: pd.Series, n: int) -> np.ndarray:
    """The partition (0..n-1) of each lead id: its text's 64-bit pandas hash, modulo ``n``."""
    hashed = pd.util.hash_pandas_object(lead_ids.astype(str), index=False).to_numpy()
    return (hashed % np.uint64(n)).astype(np.int64)


def by_lead(frame: dd.DataFrame, n: int) -> dd.DataFrame:
    """``frame`` in ``n`` partitions by lead: partition ``k`` holds the rows of the leads whose
    :func:`partition_of` is ``k`` (known divisions, so frames partitioned this way line up)."""

    def tag(part: pd.DataFrame) -> pd.DataFrame:
        return part.assign(**{PARTITION: partition_of(part["lead_id"], n)})

    meta = tag(frame._meta)
    tagged = frame.map_partitions(tag, meta=meta)
    divisions = [*range(n), n - 1] if n > 1 else [0, 0]
    return tagged.set_index(PARTITION, divisions=divisions, sort=True)


def co_partition(frames: dict[str, dd.DataFrame], n: int) -> dict[str, dd.DataFrame]:
    """Every table :func:`by_lead` into the same ``n`` partitions."""
    return {name: by_lead(frame, n) for name, frame in frames.items()}


def partitions_for(frames: dict[str, dd.DataFrame], leads_per_partition: int) -> int:
    """How many partitions: about ``leads_per_partition`` leads each (the leads' row count, read from the
    Parquet metadata when Dask knows it)."""
    leads = frames["leads"]
    n_leads = int(leads.shape[0].compute())
    return max(1, -(-n_leads // leads_per_partition))


# ---- one partition, by the single-machine functions -------------------------------------------------------
def merge_reports(reports: list[ValidationReport], examples_per_reason: int = 5) -> ValidationReport:
    """The partitions' validation reports as one: counts and rows read summed, the first examples of each
    reason kept, notes and readings once each; a note that counts rows (:meth:`ValidationReport.note_counts`)
    once, with the partitions' counts summed and the first partition's example."""
    out = ValidationReport()
    counted: dict[str, tuple[tuple[int, ...], str]] = {}  # template -> summed counts, first example
    for report in reports:
        for text in report.notes:
            if text in report.counted_notes:
                template, counts, first = report.counted_notes[text]
                seen = counted.get(template)
                if seen is None:
                    out.notes.append(template)  # its place among the notes; rendered below
                    counted[template] = (counts, first)
                else:
                    counted[template] = (tuple(a + b for a, b in zip(seen[0], counts, strict=True)), seen[1])
            elif text not in out.notes:
                out.notes.append(text)
        out.counts.update(report.counts)
        for key, issues in report.examples.items():
            bucket = out.examples.setdefault(key, [])
            bucket.extend(issues[: max(0, examples_per_reason - len(bucket))])
        for name, n in report.rows_read.items():
            out.rows_read[name] = out.rows_read.get(name, 0) + n
        out.formats.update(report.formats)
        out.time_readings.update(report.time_readings)
        out.end_bound = report.end_bound
    for i, note in enumerate(out.notes):
        if note in counted:
            counts, first = counted[note]
            out.notes[i] = note.format(*counts, first=first)
            out.counted_notes[out.notes[i]] = (note, counts, first)
    return out


def _as_local(frame: pd.DataFrame) -> pd.DataFrame:
    """A partition as pandas reads the same Parquet: a plain index, and text columns as Python strings with
    None for missing (Dask reads them as Arrow strings with <NA>), so validation and features see one reading."""
    frame = frame.reset_index(drop=True)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.StringDtype):
            values = frame[column].astype(object)
            frame[column] = values.where(values.notna(), None)
    return frame


def validated_partition(
    leads: pd.DataFrame,
    touches: pd.DataFrame | None,
    outcomes: pd.DataFrame,
    now: pd.Timestamp,
    *,
    typed: bool = True,
    attribute_types: dict[str, bool] | None = None,
    keep_order: bool = False,
) -> tuple[CRMData, ValidationReport]:
    """One partition's tables through the local engine's validation (same rules, same drops). With
    ``typed=False`` the leads' attribute columns are left as read (for a caller that types them with the
    whole table's evidence, :func:`training.data.attribute_evidence`); ``attribute_types`` (column ->
    numeric, a model's reading) types those columns whatever the partition's values show. Tables with
    :data:`ORDER` (:func:`in_file_order`) are validated in file order; the leads keep the column with
    ``keep_order``."""
    from training.data import _type_attributes, validate_leads, validate_outcomes, validate_touchpoints

    report = ValidationReport(end_bound=now)
    leads = _in_file_order(leads, keep_order)
    touches = None if touches is None else _in_file_order(touches, False)
    outcomes = _in_file_order(outcomes, False)
    clean = _as_local  # the frames as the local engine reads them
    # a partition's rows are not the files' lines: dropped rows are named by their lead
    valid_leads = validate_leads(clean(leads), "leads", report, False, by_lead=True)
    valid_touches = (
        None
        if touches is None
        else validate_touchpoints(clean(touches), "touchpoints", valid_leads, report, False, by_lead=True)
    )
    valid_outcomes = validate_outcomes(clean(outcomes), "outcomes", valid_leads, report, False, by_lead=True)
    data = CRMData(
        leads=_type_attributes(valid_leads, "leads", attribute_types) if typed and len(valid_leads) else valid_leads,
        touchpoints=valid_touches,
        outcomes=valid_outcomes,
        report=report,
    )
    return data, report


def score_partition(
    leads: pd.DataFrame,
    touches: pd.DataFrame | None,
    outcomes: pd.DataFrame,
    *,
    index: int,
    out_dir: str,
    model: ScoringModel,
    as_of: pd.Timestamp,
    cutoffs: GradeCutoffs,
    reasons: bool,
    provenance: dict[str, str | int],
    now: pd.Timestamp,
) -> dict[str, Any]:
    """Validate (rows dated after ``now`` are dropped), score and write one partition's open leads to
    ``out_dir/part-{index:05d}.parquet`` (nothing for a partition without open leads); returns the counts."""
    from training.score import open_leads, score_chunks

    # typed by the model's reading: a partition alone may show a column of categories as numbers
    data, report = validated_partition(leads, touches, outcomes, now, attribute_types=model.spec.attribute_types)
    open_, closed, not_created = open_leads(data, as_of) if len(data.leads) else (data.leads, 0, 0)
    scored = qualified = 0
    if len(open_):
        frames = list(
            score_chunks(model, open_, data.touchpoints, as_of, cutoffs, reasons=reasons, provenance=provenance)
        )
        scores = pd.concat(frames, ignore_index=True)
        scores.to_parquet(Path(out_dir) / f"part-{index:05d}.parquet", index=False)
        scored, qualified = len(scores), int(scores["qualified"].sum())
    return {
        "leads": len(data.leads),
        "scored": scored,
        "qualified": qualified,
        "closed": closed,
        "not_created": not_created,
        "rows_read": report.rows_read,
        "dropped": report.dropped,
        "validation": report,
    }


@dataclass(frozen=True)
class DaskScoreSummary:
    scored: int
    qualified: int
    skipped_closed: int
    skipped_not_yet_created: int
    dropped_rows: int
    partitions: int
    notes: tuple[str, ...]
    out: Path


def score_dataset(
    client: Client,
    data_dir: Path,
    out_dir: Path,
    model: ScoringModel,
    as_of: pd.Timestamp,
    cutoffs: GradeCutoffs,
    *,
    reasons: bool = True,
    provenance: dict[str, str | int] | None = None,
    leads_per_partition: int = 100_000,
) -> DaskScoreSummary:
    """Score every open lead of a partitioned data directory with ``model``, partition by partition on the
    cluster; the scores are written as a folder of Parquet parts (``out_dir``, created; must be empty).

    Returns the counts (scored, qualified, left out as closed or not yet created, rows dropped by validation).
    With no open lead, one part with no row and the columns of a full one is written.

    Raises:
        DataValidationError: the tables cannot be read (see :func:`read_tables`), ``out_dir`` is a file or not
            empty, or no lead is valid (as the local engine).
    """
    import dask

    now = pd.Timestamp.now(tz="UTC")  # rows dated later are dropped, as the local engine does
    frames = read_tables(data_dir)
    n = partitions_for(frames, leads_per_partition)
    parts = co_partition(in_file_order(frames), n)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataValidationError([DataIssue(str(out_dir), None, None, "--out is a file: give a folder for the parts")])
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise DataValidationError([DataIssue(str(out_dir), None, None, "the output folder is not empty")])
    touches = parts["touchpoints"].to_delayed() if "touchpoints" in parts else [None] * n
    task = dask.delayed(score_partition, pure=True)
    model_ref = client.scatter(model, broadcast=True) if hasattr(client, "scatter") else model
    tasks = [
        task(
            lead_part,
            touch_part,
            outcome_part,
            index=i,
            out_dir=str(out_dir),
            model=model_ref,
            as_of=as_of,
            cutoffs=cutoffs,
            reasons=reasons,
            provenance=provenance or {},
            now=now,
        )
        for i, (lead_part, touch_part, outcome_part) in enumerate(
            zip(parts["leads"].to_delayed(), touches, parts["outcomes"].to_delayed(), strict=True)
        )
    ]
    counts = dask.compute(*tasks)
    merged = merge_reports([c["validation"] for c in counts])
    if not any(c["leads"] for c in counts):  # as the local engine: an export with no valid lead is an error
        read = ", ".join(f"{name}: {rows:,} rows read" for name, rows in merged.rows_read.items())
        lines = "".join(f"; {line}" for line in merged.lines())
        raise DataValidationError([DataIssue(str(data_dir), None, None, f"no valid lead is left ({read}){lines}")])
    if not any(c["scored"] for c in counts):  # no open lead: one part with no row, so readers see the columns
        from training.score import empty_scores

        empty = empty_scores(model, as_of, cutoffs, reasons, provenance)
        empty.to_parquet(out_dir / "part-00000.parquet", index=False)
    # one line per file and reason, counted over every partition (each partition's own count is partial)
    notes = merged.lines()
    return DaskScoreSummary(
        scored=sum(c["scored"] for c in counts),
        qualified=sum(c["qualified"] for c in counts),
        skipped_closed=sum(c["closed"] for c in counts),
        skipped_not_yet_created=sum(c["not_created"] for c in counts),
        dropped_rows=sum(c["dropped"] for c in counts),
        partitions=n,
        notes=tuple(notes),
        out=out_dir,
    )


# ---- training examples ------------------------------------------------------------------------------------
def _validated(
    leads: pd.DataFrame,
    touches: pd.DataFrame | None,
    outcomes: pd.DataFrame,
    bound: pd.Timestamp,
    excluded: tuple[str, ...],
) -> CRMData:
    """A partition's tables validated as the local engine validates them (rows dated after ``bound``
    dropped), without the ``excluded`` lead columns; the attribute columns as read (typed by
    :func:`_examples_of`, with the evidence of every partition)."""
    dropped = [c for c in excluded if c in leads.columns]
    data, _ = validated_partition(leads.drop(columns=dropped), touches, outcomes, bound, typed=False, keep_order=True)
    data.excluded_columns = tuple(excluded)
    return data


def _latest_and_evidence(data: CRMData) -> tuple[pd.Timestamp | None, dict[str, tuple[bool, bool]]]:
    """A validated partition's latest valid time (None without a valid lead) and its attribute columns'
    evidence (:func:`training.data.attribute_evidence`)."""
    from training.data import attribute_evidence

    if not len(data.leads):
        return None, {}
    return data.latest_time(), attribute_evidence(data.leads)


def numeric_columns(evidence: Iterable[dict[str, tuple[bool, bool]]]) -> dict[str, bool]:
    """Whether each text attribute column is numeric, from its evidence in every partition: some partition
    holds a number and none a value that is not one (what the local engine decides on the whole column)."""
    merged: dict[str, tuple[bool, bool]] = {}
    for part in evidence:
        for column, (numbers, other) in part.items():
            seen = merged.get(column, (False, False))
            merged[column] = (seen[0] or numbers, seen[1] or other)
    return {column: numbers and not other for column, (numbers, other) in merged.items()}


@dataclass(frozen=True)
class PartitionSummary:
    """What a training run keeps of one validated partition besides its examples (summed by the caller)."""

    report: ValidationReport
    leads: int
    touchpoints: int
    outcomes: int
    wins: int
    created_min: pd.Timestamp | None
    created_max: pd.Timestamp | None
    digest: str  # sha256 of the partition's validated tables (pandas row hashes)
    weekly_new_leads: np.ndarray  # new leads in each of the 12 weeks before the end of the data


def _summary(data: CRMData, end: pd.Timestamp) -> PartitionSummary:
    import hashlib

    from training.pipeline import weekly_counts

    digest = hashlib.sha256()
    for frame in (data.leads, data.touchpoints, data.outcomes):
        if frame is not None:
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    created = data.leads["created_at"]
    known = len(created) and not created.isna().all()
    return PartitionSummary(
        report=data.report,
        leads=len(data.leads),
        touchpoints=0 if data.touchpoints is None else len(data.touchpoints),
        outcomes=len(data.outcomes),
        wins=int((data.outcomes["outcome"] == "won").sum()),
        created_min=created.min() if known else None,
        created_max=created.max() if known else None,
        digest=digest.hexdigest(),
        weekly_new_leads=weekly_counts(created, end),
    )


def _examples_of(
    data: CRMData,
    end: pd.Timestamp,
    config: Any,
    empty: pd.DataFrame | None = None,
    numeric: dict[str, bool] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str], PartitionSummary]:
    """A validated partition's examples (with each lead's :data:`ORDER`), its touches, its lead columns and
    its summary, labelled up to ``end``; its attribute columns typed as ``numeric`` says (the whole table's
    reading, :func:`numeric_columns`) or else by its own values. ``data`` is not changed (it may be kept on a
    worker)."""
    from training.data import _type_attributes
    from training.pipeline import make_examples

    leads = _type_attributes(data.leads, "leads", numeric) if len(data.leads) else data.leads
    order = leads[ORDER] if ORDER in leads.columns else pd.Series(np.arange(len(leads)))
    own = CRMData(
        leads=leads.drop(columns=[ORDER], errors="ignore"),
        touchpoints=data.touchpoints,
        outcomes=data.outcomes,
        report=data.report,
        data_end=end,
        excluded_columns=data.excluded_columns,
    )
    summary = _summary(own, end)
    if not len(own.leads):
        examples = pd.DataFrame() if empty is None else empty
        return examples, own.touchpoints, list(own.leads.columns), summary
    examples = make_examples(own, config)
    examples[ORDER] = examples["lead_id"].map(pd.Series(order.to_numpy(), index=own.leads["lead_id"]))
    return examples, own.touchpoints, list(own.leads.columns), summary


@dataclass(frozen=True)
class DaskExamples:
    """The labelled scoring moments of a partitioned data directory: one delayed pandas frame per lead
    partition (pandas frames, not a Dask DataFrame, so that their text columns stay as the local engine's)."""

    pieces: list[Any]
    data_end: pd.Timestamp
    partitions: int
    touches: list[Any] = field(default_factory=list)  # per partition: its validated touches (delayed)
    lead_columns: list[str] = field(default_factory=list)
    summaries: list[Any] = field(default_factory=list)  # per partition: its PartitionSummary (delayed)

    def compute(self) -> pd.DataFrame:
        """Every example in one frame (rows grouped by partition): for data that fit in memory."""
        import dask

        whole = pd.concat(dask.compute(*self.pieces), ignore_index=True)
        return whole.drop(columns=[ORDER], errors="ignore")


def examples_dataset(
    data_dir: Path,
    config: Any,
    *,
    data_end: pd.Timestamp | None = None,
    now: pd.Timestamp | None = None,
    leads_per_partition: int = 100_000,
) -> DaskExamples:
    """The training examples of :func:`training.pipeline.make_examples`, built partition by partition: each
    partition is validated as the local engine validates, its scoring moments taken and labelled up to the
    end of the data. The end is ``data_end`` (the export time, refused when after ``now``) or else the latest
    valid time of any partition that is not after ``now`` (the clock): one pass over the data before the
    examples.

    Returns the examples, not computed (columns as the local engine's, rows grouped by partition), with the
    end of the data used.
    """
    import dask

    from training.data import export_time

    now = pd.Timestamp.now(tz="UTC") if now is None else now
    data_end = None if data_end is None else export_time(data_end, now)  # as the local engine: never after now
    frames = read_tables(data_dir)
    n = partitions_for(frames, leads_per_partition)
    frames = in_file_order(frames)
    bound = now if data_end is None else data_end  # as the local engine: a given export time is the bound
    meta = _examples_meta(frames, config, bound)
    parts = co_partition(frames, n)
    touches = parts["touchpoints"].to_delayed() if "touchpoints" in parts else [None] * n
    triples = list(zip(parts["leads"].to_delayed(), touches, parts["outcomes"].to_delayed(), strict=True))
    excluded = tuple(getattr(config, "exclude_columns", ()))
    validate = dask.delayed(_validated, pure=True)
    # validated once and kept on the workers: read for the end of the data and each column's reading (a
    # text column is numeric only when it is in every partition, as on the whole table), then for examples
    validated = list(dask.persist(*(validate(lp, tp, op, bound, excluded) for lp, tp, op in triples)))
    found = dask.compute(*(dask.delayed(_latest_and_evidence)(v) for v in validated))
    numeric = numeric_columns(evidence for _, evidence in found)
    meta = _typed_meta(meta, numeric)
    if data_end is None:  # the end is the latest valid time
        latest = [t for t, _ in found if t is not None and not pd.isna(t)]
        if not latest:
            raise DataValidationError([DataIssue(str(data_dir), None, None, "no valid lead is left")])
        data_end = max(latest)
    make = dask.delayed(_examples_of, pure=True, nout=4)
    made = [make(v, data_end, config, meta, numeric) for v in validated]
    lead_columns = [c for c in meta.columns if c not in ("as_of", "moment", "label", "won_at", ORDER)]
    return DaskExamples([m[0] for m in made], data_end, n, [m[1] for m in made], lead_columns, [m[3] for m in made])


def _typed_meta(meta: pd.DataFrame, numeric: dict[str, bool]) -> pd.DataFrame:
    """The examples' empty frame with each text attribute column's type as ``numeric`` decides (float64 for
    numbers, object for category keys)."""
    return meta.astype({c: np.float64 if n else object for c, n in numeric.items() if c in meta.columns})


WINDOWS = ("train", "calibration", "test")


def _with_window(examples: pd.DataFrame, bounds: Any) -> pd.DataFrame:
    """The examples in a window, with ``window`` and ``weight`` (``1 / moments of the lead in its window``,
    as :func:`training.pipeline.split_examples` weighs them)."""
    out = []
    for name, mask in zip(WINDOWS, bounds.masks(examples), strict=True):
        rows = examples.loc[mask].copy()
        rows["window"] = name
        rows["weight"] = 1.0 / rows["lead_id"].map(rows["lead_id"].value_counts()).to_numpy(dtype=np.float64)
        out.append(rows)
    return pd.concat(out, ignore_index=True)


def _first_created(examples: pd.DataFrame) -> tuple[pd.Timestamp | None, bool]:
    if not len(examples):
        return None, True
    return examples["created_at"].min(), bool((examples["moment"] == "creation").all())


def split_dataset(built: DaskExamples, config: Any) -> tuple[Any, list[Any]]:
    """The purged time split of :func:`training.pipeline.split_examples` over partitioned examples: the
    boundaries from the earliest creation among all examples and the end of the data (one pass), then each
    partition keeps its rows of the three windows, with ``window`` and ``weight``.

    Returns the :class:`training.pipeline.TimeWindows` and one delayed frame per partition.

    Raises:
        NotEnoughData: as the local split (no example, or data too short for the gaps).
    """
    import dask

    from training.pipeline import NotEnoughData, time_windows

    firsts = dask.compute(*(dask.delayed(_first_created)(piece) for piece in built.pieces))
    known = [t for t, _ in firsts if t is not None]
    if not known:
        raise NotEnoughData("no training examples: no lead has a scoring moment whose horizon ends before the end")
    bounds = time_windows(min(known), built.data_end, config, all(only for _, only in firsts))
    assign = dask.delayed(_with_window, pure=True)
    return bounds, [assign(piece, bounds) for piece in built.pieces]


def _train_until(piece: pd.DataFrame) -> pd.Timestamp | None:
    train = piece.loc[piece["window"] == "train", "as_of"] if len(piece) else piece.iloc[:0]
    return cast(pd.Timestamp, train.max()) if len(train) else None


def _train_spec_counts(
    piece: pd.DataFrame, touches: pd.DataFrame | None, until: pd.Timestamp, columns: list[str]
) -> Any:
    from features.spec import spec_counts

    train = piece.loc[piece["window"] == "train", columns].drop_duplicates("lead_id") if len(piece) else None
    leads = train if train is not None else pd.DataFrame(columns=columns)
    known = None if touches is None else touches[touches["occurred_at"] <= until]
    return spec_counts(leads, known)


def lead_sample(lead_ids: pd.Series, share: float, seed: int) -> np.ndarray:
    """A mask keeping about ``share`` of the leads, all rows of a lead together: its id's 64-bit hash (keyed
    by ``seed``) below ``share`` of the range. The same ids, share and seed keep the same leads."""
    hashed = pd.util.hash_array(lead_ids.astype(str).to_numpy(dtype=object), hash_key=f"{seed:016d}"[-16:])
    return hashed < np.uint64(min(1.0, share) * float(2**64 - 1))


def _window_features(
    piece: pd.DataFrame,
    touches: pd.DataFrame | None,
    spec: Any,
    columns: list[str],
    keep_negatives: float,
    seed: int,
    keep_leads: dict[str, float] | None = None,
    lead_seed: int = 0,
    keep_positives: float = 1.0,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """A partition's examples in the windows (train negatives kept with probability ``keep_negatives``, their
    weight divided by it; in a window of ``keep_leads``, only that share of its leads, with all their rows),
    their features (float32, spec order) and the rows per window before sampling."""
    from features import build_features
    from training.pipeline import LEAD_WON

    if not len(piece):
        return piece, np.zeros((0, len(spec.feature_names)), dtype=np.float32), {}
    before = {str(k): int(v) for k, v in piece["window"].value_counts().items()}
    before["train_leads"] = int(piece.loc[piece["window"] == "train", "lead_id"].nunique())
    if keep_negatives < 1.0 or keep_positives < 1.0:
        # whether each lead was won in its window, before its moments are sampled by class: the leakage audit
        # counts a won lead as won even when none of its won moments is kept
        piece = piece.assign(**{LEAD_WON: piece.groupby(["lead_id", "window"])["label"].transform("max")})
    for window, share in (keep_leads or {}).items():
        if share < 1.0:
            inside = (piece["window"] == window).to_numpy()
            piece = piece.loc[~inside | lead_sample(piece["lead_id"], share, lead_seed)].reset_index(drop=True)
    if keep_negatives < 1.0 or keep_positives < 1.0:
        rng = np.random.default_rng(seed)
        train = (piece["window"] == "train").to_numpy()
        positive = train & (piece["label"] == 1).to_numpy()
        rate = np.where(positive, keep_positives, np.where(train, keep_negatives, 1.0))
        kept = rng.random(len(piece)) < rate
        piece = piece.loc[kept].copy()
        piece["weight"] = piece["weight"].to_numpy() / rate[kept]
        piece = piece.reset_index(drop=True)
    X = build_features(piece[columns], touches, piece["as_of"], spec).to_numpy(dtype=np.float32)
    return _shared_values(piece), X, before


def _shared_values(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each object column's equal values held by one Python object (the same values, types
    and missing markers, None or NaN, as before). A lead's moments repeat its id and attributes: one string
    object per row costs about 60 bytes, a shared one 8 (a pointer), in the worker, in transit (pickle keeps
    one copy of an object it meets twice) and in the process that collects the windows."""
    out = frame.copy(deep=False)
    for column in frame.columns:
        if frame[column].dtype == object:
            first: dict[Any, Any] = {}
            values = np.empty(len(frame), dtype=object)
            values[:] = [first.setdefault(v, v) if isinstance(v, str) else v for v in frame[column].tolist()]
            out[column] = values
    return out


@dataclass(frozen=True)
class TrainingMatrix:
    """The examples of the three windows, collected: rows (``window``, ``weight``, the lead columns, ...) and
    their features, with the spec learnt from the train window and the share of train negatives kept."""

    rows: pd.DataFrame
    X: np.ndarray
    spec: Any
    keep_negatives: float
    before_sampling: dict[str, int] = field(default_factory=dict)  # examples per window before sampling
    keep_leads: dict[str, float] = field(default_factory=dict)  # window -> share of its leads kept


def training_matrix(
    built: DaskExamples,
    pieces: list[Any],
    config: Any,
    *,
    keep_negatives: float = 1.0,
    seed: int = 7,
    keep_leads: dict[str, float] | None = None,
    keep_positives: float = 1.0,
) -> TrainingMatrix:
    """Features of the windowed examples (``pieces`` from :func:`split_dataset`), built partition by
    partition, with the spec the local engine learns (train-window leads, touches up to the last train
    moment), and collected to this process. ``keep_leads`` (window -> share) keeps that share of a window's leads,
    every row of a kept lead (a uniform sample of leads: no weight changes). ``keep_negatives`` below 1 keeps
    that share of the train window's
    negative examples (partition ``k`` draws with seed ``seed + k``) and multiplies their weight by its
    inverse, so the weighted totals are unbiased; calibration and test rows are all kept.

    It reads ``pieces`` and ``built.touches`` three times (the last train moment, the spec counts, the
    features): persist them on the cluster first (``dask.persist``), or each read builds them again.
    """
    import dask

    from features.spec import SpecCounts, spec_from_counts

    ends = [t for t in dask.compute(*(dask.delayed(_train_until)(p) for p in pieces)) if t is not None]
    if not ends:
        from training.pipeline import NotEnoughData

        raise NotEnoughData("the training window has no scoring moment")
    until = max(ends)
    columns = built.lead_columns
    counted = dask.compute(
        *(dask.delayed(_train_spec_counts)(p, t, until, columns) for p, t in zip(pieces, built.touches, strict=True))
    )
    total = SpecCounts(has_touches=any(c.has_touches for c in counted))
    for c in counted:
        total = total.merge(c)
    spec = spec_from_counts(
        total, exclude_columns=tuple(getattr(config, "exclude_columns", ())), half_life_days=config.half_life_days
    )
    made = list(
        dask.compute(
            *(
                dask.delayed(_window_features)(
                    p, t, spec, columns, keep_negatives, seed + k, keep_leads, seed, keep_positives
                )
                for k, (p, t) in enumerate(zip(pieces, built.touches, strict=True))
            )
        )
    )
    before = {name: sum(m[2].get(name, 0) for m in made) for name in (*WINDOWS, "train_leads")}
    rows = pd.concat([m[0] for m in made], ignore_index=True)
    # the features into one array, each partition's released once copied (one matrix and a part at a time)
    X = np.empty((len(rows), len(spec.feature_names)), dtype=np.float32)
    at = 0
    for k in range(len(made)):
        part = made[k][1]
        X[at : at + len(part)] = part
        at += len(part)
        made[k] = None
    return TrainingMatrix(rows, X, spec, keep_negatives, before, dict(keep_leads or {}))


def _examples_meta(frames: dict[str, dd.DataFrame], config: Any, bound: pd.Timestamp) -> pd.DataFrame:
    """The examples' columns and types: the local function on at most 1,000 valid leads (rows dated after
    ``bound`` are invalid, as in the run), with no touch or outcome (they add no column). The first 1,000 rows
    of the first part file are tried first; only when none is valid are whole part files read, one by one,
    until one has a valid lead (no shuffle either way).

    Raises:
        DataValidationError: no part file has a valid lead.
    """
    touches = frames["touchpoints"]._meta if "touchpoints" in frames else None
    excluded = tuple(getattr(config, "exclude_columns", ()))
    leads_parts = frames["leads"]

    def candidates() -> Iterator[pd.DataFrame]:
        yield leads_parts.head(1000, npartitions=-1)
        for i in range(leads_parts.npartitions):
            yield leads_parts.partitions[i].compute()

    for leads in candidates():
        data = _validated(leads.reset_index(drop=True), touches, frames["outcomes"]._meta, bound, excluded)
        if len(data.leads):
            data.leads = data.leads.iloc[:1000]
            end = data.latest_time() + pd.Timedelta(days=3650)  # far enough for every kind of moment to be taken
            return _examples_of(data, end, config)[0].iloc[:0]
    raise DataValidationError([DataIssue("leads", None, None, "no valid lead is left (no part file has one)")])


# ---- features, for checks and for the training examples -------------------------------------------------
def features_by_partition(
    leads: dd.DataFrame, touches: dd.DataFrame | None, as_of: pd.Timestamp, spec: Any
) -> dd.DataFrame:
    """:func:`features.build_features` of every lead as of ``as_of``, partition by partition (the frames
    co-partitioned by :func:`co_partition`); ``lead_id`` first, then ``spec.feature_names``."""
    import dask.dataframe as dd

    from features import build_features

    def one(lead_part: pd.DataFrame, touch_part: pd.DataFrame | None) -> pd.DataFrame:
        lead_part = _as_local(lead_part)
        touch_part = None if touch_part is None else _as_local(touch_part)
        X = build_features(lead_part, touch_part, as_of, spec)
        X.insert(0, "lead_id", lead_part["lead_id"].to_numpy())
        return X

    meta = pd.DataFrame(
        {"lead_id": pd.Series(dtype=object), **{f: pd.Series(dtype=np.float32) for f in spec.feature_names}}
    )
    if touches is None:
        return leads.map_partitions(one, None, meta=meta, align_dataframes=False)
    return dd.map_partitions(one, leads, touches, meta=meta, align_dataframes=False)


def spec_by_partition(
    leads: dd.DataFrame, touches: dd.DataFrame | None, *, exclude_columns: tuple[str, ...] = (), **options: Any
) -> Any:
    """:func:`features.spec.infer_spec` over frames too large for one process: the counts it learns from
    (:func:`features.spec.spec_counts`) are taken per partition and summed, then the same choice is made
    (:func:`features.spec.spec_from_counts`), so the spec equals the one learnt from the whole data. The
    frames need not be co-partitioned (counts of leads and of touches are separate)."""
    import dask
    from dask import delayed

    from features.spec import SpecCounts, spec_counts, spec_from_counts

    def lead_counts(part: pd.DataFrame) -> SpecCounts:
        return spec_counts(_as_local(part), None, exclude_columns=exclude_columns)

    def touch_counts(part: pd.DataFrame) -> SpecCounts:
        return spec_counts(pd.DataFrame(), _as_local(part))  # no lead columns: the touches only

    parts = [delayed(lead_counts)(p) for p in leads.to_delayed()]
    if touches is not None:
        parts += [delayed(touch_counts)(p) for p in touches.to_delayed()]
    counted = dask.compute(*parts)
    total = SpecCounts(has_touches=touches is not None)
    for c in counted:
        total = total.merge(c)
    return spec_from_counts(total, exclude_columns=exclude_columns, **options)


# ---- demo data written by the workers ---------------------------------------------------------------------
def _write_demo_chunk(
    out: str, index: int, seed: np.random.SeedSequence, first_id: int, n: int, days: int, end_ns: int
) -> dict[str, int]:
    from training.demo_data import _chunk

    leads, touches, outcomes = _chunk(np.random.default_rng(seed), first_id, n, days, end_ns)
    for name, frame in (("leads", leads), ("touchpoints", touches), ("outcomes", outcomes)):
        frame.to_parquet(Path(out) / name / f"part-{index:05d}.parquet", index=False)
    return {
        "leads": len(leads),
        "touchpoints": len(touches),
        "outcomes": len(outcomes),
        "won": int((outcomes["outcome"] == "won").sum()),
    }


def write_demo_data_dask(client: Client, out: Path, n_leads: int, seed: int = 7, days: int = 540) -> dict[str, int]:
    """The demo CRM of :func:`training.demo_data.generate_demo_data` (same seed, same rows), written by the
    workers as ``out/leads/``, ``out/touchpoints/`` and ``out/outcomes/``, one Parquet part per chunk of
    :data:`training.demo_data.CHUNK` leads. Returns the row counts and the wins."""
    import dask

    from training.demo_data import CHUNK, START

    for name in TABLES:
        (out / name).mkdir(parents=True, exist_ok=True)
        for old in (out / name).glob("part-*.parquet"):
            old.unlink()
    end = START + pd.Timedelta(days=days)
    seeds = np.random.SeedSequence(seed).spawn(max(1, -(-n_leads // CHUNK)))
    task = dask.delayed(_write_demo_chunk, pure=True)
    tasks = [
        task(str(out), i, child, i * CHUNK + 1, min(CHUNK, n_leads - i * CHUNK), days, end.value)
        for i, child in enumerate(seeds)
    ]
    counts = dask.compute(*tasks)
    return {key: sum(c[key] for c in counts) for key in ("leads", "touchpoints", "outcomes", "won")}
