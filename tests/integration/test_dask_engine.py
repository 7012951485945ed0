"""The Dask engine on a real two-worker LocalCluster over loopback: what it computes equals the local engine's."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import build_features
from features.spec import infer_spec
from tests.conftest import TrainedWorld, seed_mlflow_store
from training.dask_engine import (
    DaskExamples,
    DaskScoreSummary,
    co_partition,
    dask_client,
    examples_dataset,
    features_by_partition,
    partition_of,
    read_tables,
    score_dataset,
    split_dataset,
    write_demo_data_dask,
)
from training.data import CRMData, DataValidationError, load_crm_data
from training.demo_data import generate_demo_data
from training.pipeline import Split, TimeWindows, TrainConfig
from training.score import open_leads, score_chunks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with dask_client(workers=2) as c:
        yield c


def fresh_config(trained: TrainedWorld, home: Path, **overrides: object) -> TrainConfig:
    """The trained world's training config with its own MLflow store and model cache under ``home``."""
    seed_mlflow_store(home)
    return replace(
        trained.config,
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        artifact_location=(home / "mlartifacts").as_uri(),
        cache_dir=home / "cache",
        **overrides,  # type: ignore[arg-type]
    )


@dataclass
class LocalExamples:
    data: CRMData
    examples: pd.DataFrame
    split: Split


@pytest.fixture(scope="module")
def local_examples(trained: TrainedWorld) -> LocalExamples:
    """The trained world's examples and split by the local engine (what the Dask engine must equal)."""
    from training.pipeline import make_examples, split_examples

    data = load_crm_data(trained.data_dir)
    examples = make_examples(data, trained.config)
    return LocalExamples(data, examples, split_examples(examples, data, trained.config, []))


@pytest.fixture(scope="module")
def dask_examples(client: object, trained: TrainedWorld) -> tuple[DaskExamples, TimeWindows, list[object]]:
    """The same by the Dask engine in five partitions, split, and kept on the workers for the tests."""
    import dask

    built = examples_dataset(trained.data_dir, trained.config, leads_per_partition=2_000)
    n = len(built.pieces)
    kept = dask.persist(*built.pieces, *built.touches)
    built = replace(built, pieces=list(kept[:n]), touches=list(kept[n:]))
    bounds, pieces = split_dataset(built, trained.config)
    return built, bounds, list(dask.persist(*pieces))


def test_demo_data_written_by_the_workers_are_the_local_engines_rows(client: object, tmp_path: Path) -> None:
    counts = write_demo_data_dask(client, tmp_path, n_leads=1_500, seed=3)  # type: ignore[arg-type]
    local = generate_demo_data(n_leads=1_500, seed=3)
    assert counts["leads"] == 1_500 and counts["won"] == int((local.outcomes["outcome"] == "won").sum())
    for name in ("leads", "touchpoints", "outcomes"):
        parts = sorted((tmp_path / name).glob("part-*.parquet"))
        assert [p.name for p in parts] == ["part-00000.parquet"]
        written = pd.read_parquet(parts[0])
        pd.testing.assert_frame_equal(written, getattr(local, name).reset_index(drop=True))


def test_partitions_hold_whole_leads_and_line_up_across_tables(client: object, tmp_path: Path) -> None:
    import dask.dataframe as dd

    leads = pd.DataFrame({"lead_id": [f"L{i}" for i in range(40)], "x": range(40)})
    touches = pd.DataFrame({"lead_id": [f"L{i % 40}" for i in range(200)], "t": range(200)})
    parts = co_partition({"leads": dd.from_pandas(leads, npartitions=3), "touches": dd.from_pandas(touches, 5)}, 6)
    import dask

    lead_parts, touch_parts = dask.compute(parts["leads"].to_delayed(), parts["touches"].to_delayed())
    assert len(lead_parts) == len(touch_parts) == 6
    for k, (lp, tp) in enumerate(zip(lead_parts, touch_parts, strict=True)):
        expected = leads.loc[partition_of(leads["lead_id"], 6) == k, "lead_id"]
        assert sorted(lp["lead_id"]) == sorted(expected)  # every lead in the partition its hash names
        assert set(tp["lead_id"]) <= set(lp["lead_id"])  # and its touches beside it
    assert sum(len(p) for p in touch_parts) == 200


def test_features_per_partition_equal_the_local_engines_with_empty_partitions_and_a_rare_category(
    client: object, tmp_path: Path
) -> None:
    import dask.dataframe as dd

    demo = generate_demo_data(n_leads=24, seed=5)
    leads = demo.leads.copy()
    leads.loc[leads.index[7], "industry"] = "shipbuilding"  # a category of one lead, so of one partition
    spec = infer_spec(leads, demo.touchpoints, min_category_count=1)
    assert "shipbuilding" in " ".join(str(v) for v in spec.category_codes.get("industry", {}))
    as_of = demo.end - pd.Timedelta(days=30)
    expected = build_features(leads, demo.touchpoints, as_of, spec)
    expected.insert(0, "lead_id", leads["lead_id"].to_numpy())
    n = 16  # nearly as many partitions as leads: some are empty
    parts = co_partition(
        {"leads": dd.from_pandas(leads, npartitions=4), "touchpoints": dd.from_pandas(demo.touchpoints, npartitions=4)},
        n,
    )
    got = features_by_partition(parts["leads"], parts["touchpoints"], as_of, spec).compute()
    sizes = parts["leads"].map_partitions(len).compute()
    assert (sizes == 0).sum() > 0 and len(sizes) == n
    got = got.sort_values("lead_id").reset_index(drop=True)
    expected = expected.sort_values("lead_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    rare = got.loc[got["lead_id"] == leads.loc[leads.index[7], "lead_id"]]
    assert not rare.empty and not expected.loc[expected["lead_id"] == rare["lead_id"].iloc[0]].empty


def test_batch_scores_equal_the_local_engines(client: object, trained: TrainedWorld, tmp_path: Path) -> None:
    model = trained.result.model
    as_of = pd.Timestamp("2026-04-01", tz="UTC")
    cutoffs = model.default_cutoffs
    summary = score_dataset(
        client,  # type: ignore[arg-type]
        trained.data_dir,
        tmp_path / "scores",
        model,
        as_of,
        cutoffs,
        reasons=False,
        provenance={"model_version": "7", "threshold_version": 0},
        leads_per_partition=2_000,
    )
    assert summary.partitions > 1
    dask_scores = pd.read_parquet(tmp_path / "scores").sort_values("lead_id").reset_index(drop=True)
    data = load_crm_data(trained.data_dir)
    leads, closed, not_created = open_leads(data, as_of)
    local = pd.concat(
        list(
            score_chunks(
                model,
                leads,
                data.touchpoints,
                as_of,
                cutoffs,
                reasons=False,
                provenance={"model_version": "7", "threshold_version": 0},
            )
        )
    )
    local = local.sort_values("lead_id").reset_index(drop=True)
    assert summary.scored == len(local) and summary.qualified == int(local["qualified"].sum())
    assert (summary.skipped_closed, summary.skipped_not_yet_created) == (closed, not_created)
    assert dask_scores["lead_id"].tolist() == local["lead_id"].tolist()
    np.testing.assert_array_equal(dask_scores["probability"].to_numpy(), local["probability"].to_numpy())
    assert dask_scores["grade"].tolist() == local["grade"].tolist()

    # no open lead (scored before any was created): one part with no row and a full part's columns and types
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.score import empty_scores

    provenance: dict[str, str | int] = {"model_version": "7", "threshold_version": 0}
    none_open = score_dataset(
        client,  # type: ignore[arg-type]
        trained.data_dir,
        tmp_path / "none",
        model,
        pd.Timestamp("2000-01-01", tz="UTC"),
        cutoffs,
        reasons=False,
        provenance=provenance,
        leads_per_partition=2_000,
    )
    assert none_open.scored == 0 and none_open.skipped_not_yet_created == len(data.leads)
    assert [f.name for f in (tmp_path / "none").iterdir()] == ["part-00000.parquet"]
    assert pd.read_parquet(tmp_path / "none").empty
    full_part = next((tmp_path / "scores").glob("part-*.parquet"))
    assert pq.read_schema(tmp_path / "none" / "part-00000.parquet") == pq.read_schema(full_part)
    with_reasons = next(score_chunks(model, leads.iloc[:5], data.touchpoints, as_of, cutoffs, provenance=provenance))
    empty = empty_scores(model, as_of, cutoffs, reasons=True, provenance=provenance)
    assert empty.empty and list(empty.columns) == list(with_reasons.columns)
    assert (
        pa.Table.from_pandas(with_reasons, preserve_index=False).schema
        == pa.Table.from_pandas(empty, preserve_index=False).schema
    )


def test_batch_scoring_reports_each_reason_once_with_its_count_over_all_partitions(
    client: object, trained: TrainedWorld, tmp_path: Path
) -> None:
    """Two leads created after the clock, in two different partitions: the summary says so in one line with
    the count 2 (each partition used to print its own line with its own partial count), and its example names
    the lead (it used to give the row's line in its partition, which is no line of any file)."""
    data = tmp_path / "data"
    shutil.copytree(trained.data_dir, data)
    leads = pd.read_parquet(data / "leads.parquet")
    n = -(-(len(leads) + 2) // 2_000)  # partitions of about 2,000 leads (training.dask_engine.partitions_for)
    candidates = pd.Series([f"future-{i}" for i in range(50)])
    where = partition_of(candidates, n)
    first = candidates[0]
    second = candidates[where != where[0]].iloc[0]  # a lead of another partition
    late = leads.iloc[:2].copy()
    late["lead_id"] = [first, second]
    late["created_at"] = pd.Timestamp("2099-01-01", tz="UTC")
    pd.concat([leads, late], ignore_index=True).to_parquet(data / "leads.parquet")
    model = trained.result.model

    def score_into(out: Path) -> DaskScoreSummary:
        return score_dataset(
            client,  # type: ignore[arg-type]
            data,
            out,
            model,
            pd.Timestamp("2026-04-01", tz="UTC"),
            model.default_cutoffs,
            reasons=False,
            leads_per_partition=2_000,
        )

    summary = score_into(tmp_path / "scores")
    assert summary.partitions == n and summary.dropped_rows == 2
    assert len(summary.notes) == 1 and "dropped 2 row(s)" in summary.notes[0], summary.notes
    # a partition's row numbers are not the file's lines: the example names its lead instead
    assert re.search(r"\(first: leads, lead 'future-\d+', column 'created_at'", summary.notes[0]), summary.notes
    assert "line" not in summary.notes[0]

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DataValidationError, match="--out is a file: give a folder for the parts"):
        score_into(tmp_path / "a-file")
    # every lead invalid: an error as on the local engine, not an empty result
    every = leads.copy()
    every["created_at"] = every["created_at"] + pd.Timedelta(days=80 * 365)
    every.to_parquet(data / "leads.parquet")
    with pytest.raises(DataValidationError, match="no valid lead is left"):
        score_into(tmp_path / "none")


def test_a_given_data_end_is_the_bound_in_both_engines_and_never_after_the_clock(
    client: object, trained: TrainedWorld
) -> None:
    """--data-end is the export time: rows dated up to it are kept, later ones dropped, as the local engine does
    (the Dask engine used to bound by min(now, data end)); an export time after the moment of training is
    refused by both engines with the same message (it would label leads whose horizon ends after now as not
    won)."""
    import dask

    data = load_crm_data(trained.data_dir)
    clock = data.leads["created_at"].max() + pd.Timedelta(days=1)
    end = data.leads["created_at"].quantile(0.9)
    local = load_crm_data(trained.data_dir, data_end=end, now=clock)
    built = examples_dataset(trained.data_dir, trained.config, data_end=end, now=clock, leads_per_partition=2_000)
    parts = dask.compute(*built.summaries)
    assert sum(p.leads for p in parts) == len(local.leads) == int((data.leads["created_at"] <= end).sum())
    assert sum(p.touchpoints for p in parts) == len(local.touchpoints)  # type: ignore[arg-type]
    assert sum(p.report.dropped for p in parts) == local.report.dropped > 0
    early_clock = end - pd.Timedelta(days=1)
    with pytest.raises(DataValidationError) as on_local:
        load_crm_data(trained.data_dir, data_end=end, now=early_clock)
    with pytest.raises(DataValidationError) as on_dask:
        examples_dataset(trained.data_dir, trained.config, data_end=end, now=early_clock, leads_per_partition=2_000)
    assert str(on_local.value) == str(on_dask.value)
    assert "--data-end" in str(on_local.value) and "after the moment of training" in str(on_local.value)


def test_the_examples_columns_come_from_the_first_part_with_a_valid_lead(
    client: object, trained: TrainedWorld, tmp_path: Path
) -> None:
    """The first part file's leads are all invalid (created after the clock): the Dask engine takes the
    examples' columns from the next part and builds the local engine's examples (it used to stop with "none
    of the first 1,000 leads is valid", where the local engine trains)."""
    from training.pipeline import make_examples

    data = tmp_path / "data"
    shutil.copytree(trained.data_dir, data)
    leads = pd.read_parquet(data / "leads.parquet")
    (data / "leads.parquet").unlink()
    (data / "leads").mkdir()
    late = leads.iloc[:50].copy()
    late["created_at"] = late["created_at"] + pd.Timedelta(days=80 * 365)  # the same type, after the clock
    late.to_parquet(data / "leads" / "part-00000.parquet", index=False)
    leads.iloc[50:].to_parquet(data / "leads" / "part-00001.parquet", index=False)
    built = examples_dataset(data, trained.config, leads_per_partition=2_000).compute()
    local = make_examples(load_crm_data(data), trained.config)
    assert len(local) > 0 and len(built) == len(local)
    assert list(built.columns) == list(local.columns)
    key = ["lead_id", "as_of"]
    pd.testing.assert_frame_equal(
        built.sort_values(key).reset_index(drop=True), local.sort_values(key).reset_index(drop=True)
    )


def test_a_text_column_is_read_one_way_in_every_partition_as_on_the_whole_table(
    client: object, trained: TrainedWorld, tmp_path: Path
) -> None:
    """Each partition used to decide alone whether a text column is numbers: ``employees`` (numbers, one lead
    "lots") was numbers in four partitions and category keys in the fifth, and ``seats`` (numbers in one
    partition, blank elsewhere) was numbers there and missing category keys elsewhere, so the collected rows
    mixed floats and text and the leakage audit differed from the local engine's. Both engines now read
    ``employees`` as category keys and ``seats`` as numbers, in every row."""
    from training.pipeline import make_examples

    data = tmp_path / "data"
    shutil.copytree(trained.data_dir, data)
    leads = pd.read_parquet(data / "leads.parquet")
    n = -(-len(leads) // 2_000)
    part = partition_of(leads["lead_id"], n)
    leads["employees"] = [str(10 + i % 90) for i in range(len(leads))]
    leads.loc[leads.index[np.flatnonzero(part == 1)[0]], "employees"] = "lots"
    in_zero = part == 0
    leads["seats"] = np.where(in_zero, [f" {i % 7}.50 " for i in range(len(leads))], "")
    leads.to_parquet(data / "leads.parquet", index=False)

    built = examples_dataset(data, trained.config, leads_per_partition=2_000)
    assert built.partitions == n > 2
    got = built.compute()
    local = make_examples(load_crm_data(data), trained.config)
    assert local["employees"].dtype == object and local["seats"].dtype == np.float64
    assert set(local["employees"].map(type)) == {str} and local["seats"].notna().any()
    key = ["lead_id", "as_of"]
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True), local.sort_values(key).reset_index(drop=True)
    )


def test_the_dask_engine_names_what_it_cannot_read(tmp_path: Path) -> None:
    """Part files Dask cannot read as one table are refused before any work, naming the file and column (a
    shuffle over parts of different types used to stop with a P2P traceback naming nothing)."""

    def refused(data: Path) -> str:
        with pytest.raises(DataValidationError) as caught:
            read_tables(data)
        return str(caught.value)

    leads = pd.DataFrame({"lead_id": ["A", "B"], "created_at": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True)})
    outcomes = pd.DataFrame(
        {"lead_id": ["A"], "outcome": ["won"], "closed_at": pd.to_datetime(["2026-02-01"], utc=True)}
    )

    def data_dir(name: str, *parts: pd.DataFrame) -> Path:
        out = tmp_path / name
        (out / "leads").mkdir(parents=True)
        for i, part in enumerate(parts):
            part.to_parquet(out / "leads" / f"part-{i}.parquet")
        outcomes.to_parquet(out / "outcomes.parquet")
        return out

    assert set(read_tables(data_dir("fine", leads, leads.assign(lead_id=["C", "D"])))) == {"leads", "outcomes"}
    # a column of the user's named as one of the engine's own would be overwritten without a word
    said = refused(data_dir("reserved", leads.assign(_file_order=["hot", "cold"])))
    assert "leads, column '_file_order': this column name is the Dask engine's own" in said
    text = leads.assign(revenue=[1.5, 2.0]), leads.assign(revenue=[" 47.0 ", "3"])
    said = refused(data_dir("types", *text))
    assert (
        "part-1.parquet" in said
        and "'revenue'" in said
        and "type large_string here but double in part-0.parquet" in said
    )
    said = refused(data_dir("later-column", leads, leads.assign(extra_attr=["x", "y"])))
    assert "part-1.parquet" in said and "column present in this part but missing in part-0.parquet" in said
    naive = refused(data_dir("naive", leads, leads.assign(created_at=pd.to_datetime(["2026-01-03", "2026-01-04"]))))
    assert "'created_at'" in naive and "timestamp" in naive
    corrupt = data_dir("corrupt", leads)
    (corrupt / "leads" / "part-1.parquet").write_bytes(b"not parquet at all")
    assert "part-1.parquet: not a readable Parquet file" in refused(corrupt)
    empty = data_dir("empty", leads)
    (empty / "touchpoints").mkdir()
    assert "touchpoints: a folder with no .parquet part files" in refused(empty)
    twice = data_dir("twice", leads)
    leads.to_parquet(twice / "leads.parquet")
    assert "more than one leads table (leads.parquet, leads)" in refused(twice)
    csv = tmp_path / "csv"
    csv.mkdir()
    (csv / "leads.csv").write_text("lead_id,created_at\nA,2026-01-01\n")
    assert "leads.csv: the Dask engine reads Parquet tables" in refused(csv)
    only_leads = tmp_path / "only-leads"
    only_leads.mkdir()
    leads.to_parquet(only_leads / "leads.parquet")
    assert "no outcomes/ folder of Parquet parts or outcomes.parquet" in refused(only_leads)


def test_the_score_command_runs_on_the_cluster_at_scheduler_and_says_where_its_dashboard_is(
    client: object, trained: TrainedWorld, tmp_path: Path
) -> None:
    from tests.conftest import leadscore, leadscore_in_process

    out = tmp_path / "scores"
    proc = leadscore(  # the real console script: the cluster is reached from another process
        trained.home,
        "score",
        "--engine",
        "dask",
        "--data",
        str(trained.data_dir),
        "--out",
        str(out),
        "--as-of",
        "2026-04-01",
        "--no-reasons",
        "--scheduler",
        client.scheduler.address,  # type: ignore[attr-defined]
    )
    assert proc.returncode == 0, proc.stderr
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "Dask dashboard: http://127.0.0.1:" in said and "scored" in said
    scored = pd.read_parquet(out)
    assert f"scored {len(scored):,} open leads" in said and set(scored["threshold_version"]) == {0}
    wrong = leadscore_in_process(
        trained.home, "score", "--engine", "spark", "--data", str(trained.data_dir), "--out", str(out)
    )
    assert wrong.returncode == 2 and "--engine" in wrong.stderr


def test_training_examples_equal_the_local_engines(
    dask_examples: tuple[DaskExamples, TimeWindows, list[object]], local_examples: LocalExamples
) -> None:
    built, local = dask_examples[0], local_examples.examples
    assert built.partitions > 1 and built.data_end == local_examples.data.end_time  # found over every partition
    got = built.compute()
    keys = ["lead_id", "as_of"]
    got = got.sort_values(keys).reset_index(drop=True)
    local = local.sort_values(keys).reset_index(drop=True)
    assert len(got) == len(local) and got["label"].sum() == local["label"].sum() > 0
    pd.testing.assert_frame_equal(got[local.columns], local, check_dtype=False, check_categorical=False)


def test_a_spec_learnt_per_partition_equals_the_one_learnt_from_the_whole(client: object) -> None:
    """Counts add up across partitions: a category seen in one partition only is kept, and one seen 3 times in
    each of two partitions passes a minimum of 5 that neither partition reaches alone."""
    import dask.dataframe as dd

    from training.dask_engine import spec_by_partition

    demo = generate_demo_data(n_leads=600, seed=9)
    leads = demo.leads.copy()
    leads.loc[leads.index[5], "industry"] = "shipbuilding"
    leads.loc[leads.index[[0, 1, 2, 597, 598, 599]], "industry"] = "mining"
    whole = infer_spec(leads, demo.touchpoints, min_category_count=1)
    got = spec_by_partition(
        dd.from_pandas(leads, npartitions=3), dd.from_pandas(demo.touchpoints, npartitions=4), min_category_count=1
    )
    assert got == whole and "shipbuilding" in whole.categorical_attributes["industry"]
    five = spec_by_partition(dd.from_pandas(leads, npartitions=2), None, min_category_count=5)
    assert five == infer_spec(leads, None, min_category_count=5)
    assert (
        "mining" in five.categorical_attributes["industry"]
        and "shipbuilding" not in five.categorical_attributes["industry"]
    )


def test_an_unreachable_scheduler_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    from tests.conftest import leadscore_in_process

    args = ("demo-data", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "d"))
    run = leadscore_in_process(tmp_path, *args, LEADSCORE_DASK_CONNECT_SECONDS="1")
    assert run.returncode == 2 and "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in " ".join(
        run.stderr.split()
    )


def test_the_purged_time_split_per_partition_equals_the_local_split(
    dask_examples: tuple[DaskExamples, TimeWindows, list[object]], local_examples: LocalExamples, trained: TrainedWorld
) -> None:
    import dask

    local, split = local_examples.examples, local_examples.split
    expected = []
    for name, rows in (("train", split.train), ("calibration", split.calibration), ("test", split.test)):
        part = local.iloc[rows][["lead_id", "as_of"]].assign(window=name, weight=split.weight[rows])
        expected.append(part)
    want = pd.concat(expected).sort_values(["lead_id", "as_of"]).reset_index(drop=True)
    _, bounds, pieces = dask_examples
    got = pd.concat(dask.compute(*pieces))[["lead_id", "as_of", "window", "weight"]]
    got = got.sort_values(["lead_id", "as_of"]).reset_index(drop=True)
    assert bounds.windows(trained.config.horizon_days) == split.windows
    assert set(want["window"]) == {"train", "calibration", "test"}
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_the_training_matrix_equals_the_local_engines_and_sampling_keeps_the_weighted_totals(
    dask_examples: tuple[DaskExamples, TimeWindows, list[object]], local_examples: LocalExamples, trained: TrainedWorld
) -> None:
    from training.dask_engine import training_matrix

    config = trained.config
    data, local, split = local_examples.data, local_examples.examples, local_examples.split
    train_rows = local.iloc[split.train]
    lead_cols = list(data.leads.columns)
    touches = data.touchpoints
    assert touches is not None
    known = touches[touches["occurred_at"] <= train_rows["as_of"].max()]
    spec = infer_spec(train_rows[lead_cols].drop_duplicates("lead_id"), known, half_life_days=config.half_life_days)
    rows = np.concatenate([split.train, split.calibration, split.test])
    X_local = build_features(local[lead_cols], touches, local["as_of"], spec).to_numpy(dtype=np.float32)[rows]
    keys = local.iloc[rows][["lead_id", "as_of"]].reset_index(drop=True)

    built, _, pieces = dask_examples
    whole = training_matrix(built, pieces, config)
    assert whole.spec == spec
    order_local = keys.sort_values(["lead_id", "as_of"]).index.to_numpy()
    order_dask = whole.rows[["lead_id", "as_of"]].sort_values(["lead_id", "as_of"]).index.to_numpy()
    assert len(order_local) == len(order_dask)
    np.testing.assert_array_equal(whole.X[order_dask], X_local[order_local])

    sampled = training_matrix(built, pieces, config, keep_negatives=0.25, seed=1)
    train = sampled.rows["window"] == "train"
    all_train = whole.rows["window"] == "train"
    positives = (train & (sampled.rows["label"] == 1)).sum()
    assert positives == (all_train & (whole.rows["label"] == 1)).sum()  # every positive kept
    kept = (train & (sampled.rows["label"] == 0)).sum()
    negatives = (all_train & (whole.rows["label"] == 0)).sum()
    assert 0.2 * negatives < kept < 0.3 * negatives
    # weighted, the sample stands for the whole train window (within sampling noise)
    total, estimate = whole.rows.loc[all_train, "weight"].sum(), sampled.rows.loc[train, "weight"].sum()
    assert abs(estimate - total) < 0.05 * total
    assert (sampled.rows["window"] != "train").sum() == (whole.rows["window"] != "train").sum()

    # sampled hard in both classes, a won lead whose won moments were all left out is still won for the
    # leakage audit: each kept train moment carries its lead's label over all its moments before sampling
    from training.pipeline import LEAD_WON

    both = training_matrix(built, pieces, config, keep_negatives=0.2, keep_positives=0.2, seed=3)
    won_before = whole.rows.loc[all_train].groupby("lead_id")["label"].max()
    kept_train = both.rows.loc[both.rows["window"] == "train"]
    carried = kept_train.groupby("lead_id")[LEAD_WON].max()
    assert carried.to_dict() == won_before.loc[carried.index].to_dict()
    seen_won = kept_train.groupby("lead_id")["label"].max()
    assert (seen_won < carried).sum() > 0  # some won leads kept no won moment: counted by label, they were lost
    assert both.before_sampling["train_leads"] == whole.rows.loc[all_train, "lead_id"].nunique()
    assert LEAD_WON not in whole.rows.columns  # unsampled: the local engine's columns


def _logged(tracking_uri: str, run_id: str) -> tuple[dict[str, str], dict[str, float], set[str], dict[str, str]]:
    from mlflow.tracking import MlflowClient

    mlflow_client = MlflowClient(tracking_uri=tracking_uri)
    run = mlflow_client.get_run(run_id)

    def artifacts(path: str | None = None) -> set[str]:
        out: set[str] = set()
        for item in mlflow_client.list_artifacts(run_id, path):
            out |= artifacts(item.path) if item.is_dir else {item.path}
        return out

    return run.data.params, run.data.metrics, artifacts(), run.data.tags


def test_training_on_the_cluster_gives_the_local_engines_model_and_logs_what_it_logs(
    client: object, trained: TrainedWorld, tmp_path: Path
) -> None:
    """``train --engine dask`` on the trained world's data in five partitions: no sampling at this size, so the
    same examples, split and features as the local run; the same metrics, and every param, metric, tag and
    artifact the local run logs (plus the engine's own)."""
    from training.dask_training import train_on_dask

    config = fresh_config(trained, tmp_path, promote=False)
    result = train_on_dask(client, config, leads_per_partition=2_000)  # type: ignore[arg-type]
    local = trained.result
    assert result.split_kind == "time" and result.model.meta["engine"]["keep_negatives"] == 1.0
    assert result.model.meta["engine"]["partitions"] == 5 and result.model.meta["engine"]["workers"] == 2
    assert result.model.meta["windows"] == local.model.meta["windows"]
    assert result.model.spec.to_json() == local.model.spec.to_json()
    for name in ("test_roc_auc", "test_first_score_roc_auc", "test_brier", "baseline_logreg_test_roc_auc"):
        assert result.metrics[name] == pytest.approx(local.metrics[name], abs=1e-6), name
    assert result.model.meta["leads_per_week"] == pytest.approx(local.model.meta["leads_per_week"])
    fingerprint, local_print = result.model.meta["data_fingerprint"], local.model.meta["data_fingerprint"]
    for key in ("leads", "touchpoints", "outcomes", "wins", "leads_from", "leads_to", "data_end", "dropped_rows"):
        assert fingerprint[key] == local_print[key], key

    params, metrics, artifacts, tags = _logged(config.tracking_uri, result.run_id)  # type: ignore[arg-type]
    l_params, l_metrics, l_artifacts, l_tags = _logged(trained.config.tracking_uri, local.run_id)  # type: ignore[arg-type]
    assert set(l_params) <= set(params) and params["engine"] == "dask" and l_params.get("engine") == "local"
    assert set(l_metrics) == set(metrics) and set(l_tags) - {"promoted", "promotion"} <= set(tags)
    assert l_artifacts == artifacts and "test_predictions.parquet" in artifacts
    for name in ("train_examples", "calibration_examples", "test_examples", "test_leads", "test_wins"):
        assert metrics[name] == l_metrics[name], name


def test_training_on_the_cluster_samples_train_negatives_past_the_cap_and_keeps_the_test_window_whole(
    client: object, trained: TrainedWorld, tmp_path: Path
) -> None:
    """``leadscore train --engine dask --scheduler ADDRESS --max-train-examples 4000 --max-window-examples
    1000``: the train window's negatives are sampled to about 4,000 moments (positives all kept); the
    calibration and test windows keep a uniform sample of their leads, every moment of a kept lead."""
    from mlflow.tracking import MlflowClient

    from tests.conftest import leadscore_in_process

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [
        "train",
        "--engine",
        "dask",
        "--scheduler",
        client.scheduler.address,  # type: ignore[attr-defined]
        "--data",
        str(trained.data_dir),
        "--max-train-examples",
        "4000",
        "--max-window-examples",
        "1000",
        "--no-tune",  # one candidate: the sampling is what is tested here
        "--seed",
        "42",
        "--promote",
    ]
    run = leadscore_in_process(tmp_path, *command, MLFLOW_TRACKING_URI=tracking)
    said = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Dask dashboard: http://127.0.0.1:" in said and "train moments sampled past --max-train-examples" in said
    assert "a uniform sample of" in said
    run_id = said.split("run id: ")[1].split()[0]
    params, metrics, _, _ = _logged(tracking, run_id)
    _, l_metrics, _, _ = _logged(trained.config.tracking_uri, trained.result.run_id)  # type: ignore[arg-type]
    keep = float(params["engine_keep_negatives"])
    assert params["engine"] == "dask" and 0.01 <= keep < 1.0
    assert int(params["engine_train_examples_before_sampling"]) == l_metrics["train_examples"]
    assert int(params["engine_train_leads_before_sampling"]) == l_metrics["train_leads"]
    assert metrics["train_examples"] == pytest.approx(4_000, rel=0.1)  # positives all kept, negatives sampled
    for window in ("calibration", "test"):
        share = float(params[f"engine_{window}_leads_kept"])
        assert share == pytest.approx(1000 / l_metrics[f"{window}_examples"])  # the cap over the moments there
        assert metrics[f"{window}_leads"] == pytest.approx(share * l_metrics[f"{window}_leads"], rel=0.25)
        assert f"the {window} window has {int(l_metrics[f'{window}_examples']):,} scoring moments" in said
    # every moment of a kept test lead is kept: the kept leads' moments are the local engine's for them
    from training.dask_engine import lead_sample

    local_test = pd.read_parquet(
        MlflowClient(tracking_uri=trained.config.tracking_uri).download_artifacts(
            trained.result.run_id, "test_predictions.parquet", str(tmp_path)
        )
    )
    kept = local_test[lead_sample(local_test["lead_id"], float(params["engine_test_leads_kept"]), 42)]
    assert metrics["test_examples"] == len(kept) and metrics["test_leads"] == kept["lead_id"].nunique()
    assert "promoted version 1 to champion (there was no champion)" in said


def test_the_promotion_gate_scores_the_champion_on_the_sampled_test_window_row_for_row(
    client: object, trained: TrainedWorld, tmp_path: Path
) -> None:
    """Two identical Dask runs with ``--promote`` over five partitions, the test window sampled by lead: the
    second run's gate scores the champion (the same model) on the same test moments, in the order of their
    labels, so the champion's test ROC AUC is the one the first run logged, to the digit."""
    from training.dask_training import train_on_dask

    config = fresh_config(trained, tmp_path, promote=True, tune=False)
    caps = {"max_train_examples": 4_000, "max_window_examples": 1_000, "leads_per_partition": 2_000}
    first = train_on_dask(client, config, **caps)  # type: ignore[arg-type]
    assert first.promoted and first.model.meta["engine"]["test_leads_kept"] < 1.0
    assert first.model.meta["engine"]["partitions"] == 5
    second = train_on_dask(client, config, **caps)  # type: ignore[arg-type]
    auc = f"{first.metrics['test_roc_auc']:.4f}"
    assert second.metrics["test_roc_auc"] == first.metrics["test_roc_auc"]
    assert second.promotion_message.startswith(
        f"promoted version 2 to champion: test ROC AUC {auc} >= champion version 1's {auc} on the same test window"
    ), second.promotion_message


def test_the_creation_time_baseline_stays_calibrated_when_the_train_window_is_sampled(
    client: object, trained: TrainedWorld, tmp_path: Path
) -> None:
    """Train moments sampled by class (about a sixth of the negatives kept), the test window whole: the
    creation-time logistic regression is fitted on the kept creation moments weighted by 1 / their class's
    share, so on the same test leads at their first score it is about as calibrated and as accurate as the
    local engine's, fitted on every training lead (local: ECE 0.027, Brier 0.048; weighted: 0.028, 0.053;
    fitted as before on each lead's first kept moment, unweighted: 0.133, 0.083)."""
    from training.dask_training import train_on_dask

    config = fresh_config(trained, tmp_path, promote=False, tune=False)
    result = train_on_dask(
        client,  # type: ignore[arg-type]
        config,
        max_train_examples=2_500,
        max_window_examples=10**9,
        leads_per_partition=2_000,
    )
    engine, local = result.model.meta["engine"], trained.result.metrics
    assert engine["keep_negatives"] < 0.5 and engine["test_leads_kept"] == 1.0
    assert result.model.meta["test_rows"] == trained.result.model.meta["test_rows"]  # the local run's test moments
    name = "baseline_creation_logreg_test_first_score_"
    assert result.metrics[name + "ece"] < 0.05
    assert result.metrics[name + "brier"] == pytest.approx(local[name + "brier"], abs=0.01)
    assert result.metrics[name + "roc_auc"] == pytest.approx(local[name + "roc_auc"], abs=0.05)


def test_training_on_the_cluster_refuses_what_it_cannot_take_with_a_message(
    client: object, trained: TrainedWorld, tmp_path: Path
) -> None:
    from tests.conftest import leadscore_in_process

    address = client.scheduler.address  # type: ignore[attr-defined]
    base = ("train", "--engine", "dask", "--scheduler", address)
    scoring = ("score", "--engine", "dask", "--scheduler", address, "--data", str(trained.data_dir), "--out", "o")
    for options in (("--strict",), ("--exclude-columns", "industry", "--timezone", "Europe/Paris")):
        refused = leadscore_in_process(tmp_path, *scoring, *options)
        said = " ".join((refused.stdout + refused.stderr).split())
        assert refused.returncode == 2 and "only apply with the local engine" in said, said
        assert all(o in said for o in options if o.startswith("--"))
    # how files are read applies to the local engine only: the cluster used to ignore these without a word
    for options in (("--strict",), ("--timezone", "Europe/Paris", "--won-values", "Signed")):
        refused = leadscore_in_process(tmp_path, *base, "--data", str(trained.data_dir), *options)
        said = " ".join((refused.stdout + refused.stderr).split())
        assert refused.returncode == 2 and "only apply with the local engine" in said, said
        assert all(o in said for o in options if o.startswith("--"))
    outcomes = leadscore_in_process(tmp_path, *base, "--data", str(trained.data_dir), "--outcomes-file", "x.parquet")
    assert outcomes.returncode == 2 and "--engine local" in outcomes.stdout + outcomes.stderr
    flat = leadscore_in_process(tmp_path, *base, "--data", "export.csv", "--id-column", "Id")
    assert flat.returncode == 2 and "flat-export options" in " ".join((flat.stdout + flat.stderr).split())
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "leads.csv").write_text("lead_id,created_at\nL1,2025-01-01\n")
    (csv_dir / "outcomes.csv").write_text("lead_id,outcome,closed_at\n")
    csv = leadscore_in_process(tmp_path, *base, "--data", str(csv_dir))
    said = " ".join((csv.stdout + csv.stderr).split())
    assert csv.returncode == 2 and "the Dask engine reads Parquet tables" in said, said
    missing = leadscore_in_process(tmp_path, *base, "--data", str(trained.data_dir), "--exclude-columns", "nope")
    said = " ".join((missing.stdout + missing.stderr).split())
    assert missing.returncode == 2 and "nope" in said and "excluded column does not exist" in said, said
