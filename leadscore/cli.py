"""The ``leadscore`` console script: thin Typer wrappers over typed functions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from models.registry import LoadedModel
    from models.threshold_analysis import TradeOff
    from serving.store import KeyStore, Principal
    from serving.thresholds import InForce, Policy
    from training.data import FlatExportOptions, InputOptions

app = typer.Typer(
    help="Leadscore: calibrated lead scoring with reasons and an agreed qualified-lead threshold.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Leadscore command line."""


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option(help="Directory to write leads, touchpoints and outcomes into.")],
    leads: Annotated[int, typer.Option(help="Number of leads.", min=1)] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same data.")] = 7,
    format: Annotated[str, typer.Option(help="File format: parquet or csv.")] = "parquet",
    engine: Engine = "local",
    scheduler: Scheduler = None,
) -> None:
    """Write a realistic synthetic CRM (deterministic by seed). With --engine dask the workers write it as
    folders of Parquet parts (leads/, touchpoints/, outcomes/): the same rows, never held in one process."""
    from training.demo_data import write_demo_data

    if format not in ("parquet", "csv"):
        raise typer.BadParameter("format must be parquet or csv", param_hint="--format")
    if _engine(engine) == "dask":
        from training.dask_engine import write_demo_data_dask

        if format != "parquet":
            raise typer.BadParameter("the Dask engine writes Parquet", param_hint="--format")
        from training.dask_engine import ClusterUnavailable

        try:
            with _dask(scheduler) as client:
                counts = write_demo_data_dask(client, out, n_leads=leads, seed=seed)
        except ClusterUnavailable as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(2) from err
        console.print(
            f"wrote {counts['leads']:,} leads, {counts['touchpoints']:,} touch points, {counts['outcomes']:,} "
            f"outcomes ({counts['won']:,} won) to {out} as folders of Parquet parts"
        )
        return
    with console.status(f"generating {leads:,} leads"):
        data = write_demo_data(out, n_leads=leads, seed=seed, fmt=format)
    wins = int((data.outcomes["outcome"] == "won").sum())
    console.print(
        f"wrote {len(data.leads):,} leads, {len(data.touchpoints):,} touch points, "
        f"{len(data.outcomes):,} outcomes ({wins:,} won) to {out}"
    )


def _flat_options(
    id_column: str | None,
    time_column: str | None,
    label_column: str | None,
    positive_label: str,
    close_column: str | None = None,
) -> FlatExportOptions | None:
    from training.data import FlatExportOptions

    if not (id_column or label_column or time_column or close_column):
        return None
    return FlatExportOptions(
        id_column=id_column or "lead_id",
        label_column=label_column or "converted",
        positive_label=positive_label,
        time_column=time_column,
        close_column=close_column,
    )


def _columns(text: str | None) -> tuple[str, ...]:
    """``a,b,"c, d"`` -> ("a", "b", "c, d"): comma-separated names, CSV quoting for names with commas."""
    import csv

    if not text:
        return ()
    return tuple(c.strip() for row in csv.reader([text], skipinitialspace=True) for c in row if c.strip())


IdColumn = Annotated[str | None, typer.Option(help="Flat export: the lead id column.")]
TimeColumn = Annotated[str | None, typer.Option(help="Flat export: the lead creation time column (optional).")]
LabelColumn = Annotated[str | None, typer.Option(help="Flat export: the label column.")]
PositiveLabel = Annotated[str, typer.Option(help="Flat export: the label value that means converted.")]
CloseColumn = Annotated[
    str | None, typer.Option(help="Flat export: the close (conversion) time column, to label by the horizon.")
]
DataEnd = Annotated[
    str | None,
    typer.Option(
        help="The export time (ISO 8601 (without an offset: in --timezone), or 'now'), not after now: rows dated "
        "later are dropped and counted. Default: the latest time in the data that is not after now."
    ),
]
ExcludeColumns = Annotated[
    str | None,
    typer.Option(help="Comma-separated lead attribute columns to leave out (e.g. leaky ones); any data shape."),
]
Strict = Annotated[bool, typer.Option(help="Fail on any bad row instead of dropping and reporting it.")]
Engine = Annotated[
    str, typer.Option(help="local (this process) or dask (a Dask cluster: --scheduler, else a LocalCluster).")
]
Scheduler = Annotated[
    str | None,
    typer.Option(help="Dask scheduler address for --engine dask (default: LEADSCORE_DASK_SCHEDULER, else local)."),
]


def _engine(engine: str) -> str:
    if engine not in ("local", "dask"):
        raise typer.BadParameter("use local or dask", param_hint="--engine")
    return engine


def _dask(scheduler: str | None) -> Any:
    """A client of the Dask cluster (``--scheduler``, ``LEADSCORE_DASK_SCHEDULER`` or a LocalCluster)."""
    from leadscore.settings import get_settings
    from training.dask_engine import dask_client

    settings = get_settings()
    return dask_client(
        scheduler or settings.dask_scheduler,
        say=lambda line: console.print(line),
        connect_timeout=settings.dask_connect_seconds,
    )


Delimiter = Annotated[
    str | None, typer.Option(help="Delimiter of text files: ',', ';', tab (or '\\t'), '|'. Default: detected.")
]
Encoding = Annotated[
    str | None, typer.Option(help="Encoding of text files (e.g. utf-8, cp1252, utf-16). Default: detected.")
]
Sheet = Annotated[
    str | None,
    typer.Option(
        help="Excel workbooks: the sheet, by name or 0-based number, or one per table "
        "('leads=Leads,outcomes=Deals'). Default: the first."
    ),
]
Decimal = Annotated[
    str | None,
    typer.Option(help="Decimal mark of text files not delimited by commas: ',' or '.'. Default: detected."),
]
DateFormat = Annotated[
    str | None,
    typer.Option(help="strftime format of the time columns written as text, e.g. '%d/%m/%Y %H:%M'. Default: detected."),
]
DayFirst = Annotated[
    bool | None,
    typer.Option(
        "--dayfirst/--no-dayfirst",
        help="Dates like 01/02/2026 are day-first (--dayfirst) or month-first. Default: decided per column.",
    ),
]
Timezone = Annotated[str, typer.Option(help="IANA time zone of times written without an offset.")]
WonValues = Annotated[
    str | None, typer.Option(help="Comma-separated outcome or label values that mean won (your own stage names).")
]
LostValues = Annotated[str | None, typer.Option(help="Comma-separated outcome values that mean lost.")]


def _inputs(
    delimiter: str | None,
    encoding: str | None,
    sheet: str | None,
    decimal: str | None,
    date_format: str | None,
    dayfirst: bool | None,
    timezone: str,
    won_values: str | None,
    lost_values: str | None,
) -> InputOptions:
    from training.data import InputOptions, outcome_key
    from training.reading import ReadOptions
    from training.timestamps import TimeOptions

    pairs = [part.split("=", 1) for part in _columns(sheet)] if sheet and "=" in sheet else []
    if any(len(pair) != 2 or pair[0].strip() not in ("leads", "touchpoints", "outcomes") for pair in pairs):
        raise typer.BadParameter(
            "one sheet for all, or TABLE=SHEET for leads, touchpoints, outcomes", param_hint="--sheet"
        )
    sheets = {table.strip(): name.strip() for table, name in pairs}
    if len(sheets) != len(pairs) or not all(sheets.values()):
        raise typer.BadParameter("each table once, each with a sheet name (leads=Leads)", param_hint="--sheet")
    if date_format and dayfirst is not None:
        raise typer.BadParameter(
            "a --date-format already says where the day is; give one of them", param_hint="--dayfirst"
        )
    both = {outcome_key(v) for v in _columns(won_values)} & {outcome_key(v) for v in _columns(lost_values)}
    if both:
        raise typer.BadParameter(f"{', '.join(sorted(both))} cannot mean both won and lost", param_hint="--won-values")
    return InputOptions(
        read=ReadOptions(delimiter=delimiter, encoding=encoding, sheet=None if sheets else sheet, decimal=decimal),
        sheets=sheets,
        time=TimeOptions(date_format=date_format, dayfirst=dayfirst, timezone=timezone),
        won_values=_columns(won_values),
        lost_values=_columns(lost_values),
    )


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Data directory (leads, touchpoints, outcomes) or a flat export file.")],
    horizon_days: Annotated[int, typer.Option(help="A lead converts when won within this many days.", min=1)] = 90,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment name.")] = None,
    model_name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    promote: Annotated[bool, typer.Option(help="Make it the champion if at least as good as the current one.")] = False,
    force: Annotated[bool, typer.Option(help="With --promote: promote even if worse than the champion.")] = False,
    seed: Annotated[int | None, typer.Option(help="Random seed (same data + seed = same model).")] = None,
    data_end: DataEnd = None,
    moments: Annotated[
        str,
        typer.Option(help="Scoring moments taken as examples: any of creation, activity, periodic (comma-separated)."),
    ] = "creation,activity,periodic",
    every_days: Annotated[int, typer.Option(help="Days between periodic scoring moments.", min=1)] = 30,
    max_lead_age_days: Annotated[int, typer.Option(help="No scoring moments after this lead age.", min=1)] = 180,
    tune: Annotated[
        bool,
        typer.Option(help="Choose among a few LightGBM and logistic regression settings on the calibration window."),
    ] = True,
    id_column: IdColumn = None,
    time_column: TimeColumn = None,
    close_column: CloseColumn = None,
    label_column: LabelColumn = None,
    positive_label: PositiveLabel = "1",
    exclude_columns: ExcludeColumns = None,
    strict: Strict = False,
    delimiter: Delimiter = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    decimal: Decimal = None,
    date_format: DateFormat = None,
    dayfirst: DayFirst = None,
    timezone: Timezone = "UTC",
    won_values: WonValues = None,
    lost_values: LostValues = None,
    outcomes_file: Annotated[
        Path | None,
        typer.Option(
            help="Parquet file of outcomes (lead_id, outcome, closed_at, amount) merged over the export's; "
            "`leadscore retrain` passes those received through the API."
        ),
    ] = None,
    engine: Engine = "local",
    scheduler: Scheduler = None,
    max_train_examples: Annotated[
        int,
        typer.Option(
            help="--engine dask: over this many train-window scoring moments, the window is sampled by class (every "
            "positive kept unless they alone pass half of it) to about this many, each kept moment weighted up. No "
            "class is kept at under 1%, so a window of more than 100 times this many negatives keeps more.",
            min=1000,
        ),
    ] = 1_000_000,
    max_window_examples: Annotated[
        int,
        typer.Option(
            help="--engine dask: a calibration or test window with more scoring moments than this keeps a uniform "
            "sample of its leads (all their moments) of about this many.",
            min=1000,
        ),
    ] = 1_000_000,
) -> None:
    """Train, evaluate against the baselines, audit for leakage, log to MLflow and register a model version.
    With --engine dask the examples and features are built on a Dask cluster from a directory of Parquet
    tables, and the fit runs here on them (negatives sampled past --max-train-examples)."""
    from rich.table import Table

    from leadscore.settings import get_settings
    from training.data import DataValidationError
    from training.pipeline import MODELS, NotEnoughData, TrainConfig
    from training.pipeline import train as run_training

    on_dask = _engine(engine) == "dask"
    if on_dask and (outcomes_file is not None or any((id_column, time_column, close_column, label_column))):
        raise typer.BadParameter(
            "the Dask engine trains on a data directory of Parquet tables: no flat-export options or "
            "--outcomes-file (use --engine local)",
            param_hint="--engine",
        )
    reading = {  # how files are read: the Dask engine reads Parquet tables as they are (naive times are UTC)
        **_reading_options(strict, delimiter, encoding, sheet, decimal, date_format, dayfirst, timezone),
        "--won-values": won_values,
        "--lost-values": lost_values,
    }
    ignored = [name for name, value in reading.items() if value is not None]
    if on_dask and ignored:
        raise typer.BadParameter(
            f"the Dask engine reads a data directory of Parquet tables as they are: {', '.join(ignored)} only "
            "apply with the local engine (leave out --engine dask)",
            param_hint="--engine",
        )
    kinds = {m.strip() for m in moments.split(",") if m.strip()}
    unknown = kinds - {"creation", "activity", "periodic"}
    if unknown or not kinds:
        raise typer.BadParameter(
            f"unknown moments: {', '.join(sorted(unknown)) or '(none given)'}", param_hint="--moments"
        )
    settings = get_settings()
    settings.ensure_home()
    config = TrainConfig(
        data=data,
        flat=_flat_options(id_column, time_column, label_column, positive_label, close_column),
        strict=strict,
        exclude_columns=_columns(exclude_columns),
        data_end=data_end,
        inputs=_inputs(delimiter, encoding, sheet, decimal, date_format, dayfirst, timezone, won_values, lost_values),
        horizon_days=horizon_days,
        moment_at_creation="creation" in kinds,
        moment_after_activity="activity" in kinds,
        moment_every_days=every_days if "periodic" in kinds else 0,
        max_lead_age_days=max_lead_age_days,
        tune=tune,
        experiment=experiment or settings.experiment,
        model_name=model_name or settings.model_name,
        promote=promote,
        force=force,
        seed=settings.seed if seed is None else seed,
        tracking_uri=settings.resolved_tracking_uri,
        registry_uri=settings.resolved_registry_uri,
        artifact_location=settings.artifact_location,
        cache_dir=settings.model_cache_dir,
        extra_outcomes=outcomes_file,
    )
    try:
        with console.status("training") as status:

            def progress(message: str) -> None:
                status.update(message)
                console.log(message)

            if on_dask:
                from training.dask_engine import ClusterUnavailable
                from training.dask_training import train_on_dask

                try:
                    with _dask(scheduler) as client:
                        result = train_on_dask(
                            client,
                            config,
                            progress,
                            max_train_examples=max_train_examples,
                            max_window_examples=max_window_examples,
                        )
                except ClusterUnavailable as err:
                    console.print(f"[red]error:[/red] {err}")
                    raise typer.Exit(2) from err
            else:
                result = run_training(config, progress=progress)
    except (NotEnoughData, DataValidationError) as err:
        for note in getattr(err, "notes", []):  # the validation report first: it often shows the cause
            console.print(f"[yellow]note:[/yellow] {note}")
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    table = Table(title=f"Test window ({result.split_kind} split; all moments: each once; first score: each lead once)")
    for col in ("metric", *MODELS.values()):
        table.add_column(col)
    for row in result.metric_table():
        table.add_row(*row)
    Console().print(table)
    if result.leakage_suspects:
        console.print(
            f"[red]leakage audit:[/red] {len(result.leakage_suspects)} attribute(s) look like they leak the outcome "
            "(see the notes above); to leave them out, train again with:"
        )
        typer.echo(f"  {result.exclude_line}")
    typer.echo(f"run id: {result.run_id}")
    typer.echo(f"model: {config.model_name} version {result.model_version}")
    typer.echo(result.promotion_message)


@app.command()
def retrain(
    data: Annotated[Path, typer.Option(help="A fresh export: data directory or flat export file.")],
    horizon_days: Annotated[
        int | None,
        typer.Option(help="Conversion horizon (default: the champion's, else LEADSCORE_HORIZON_DAYS).", min=1),
    ] = None,
    data_end: DataEnd = None,
    exclude_columns: ExcludeColumns = None,
    strict: Strict = False,
    force: Annotated[bool, typer.Option(help="Promote even if worse than the champion.")] = False,
    tune: Annotated[
        bool,
        typer.Option(help="Choose among a few LightGBM and logistic regression settings on the calibration window."),
    ] = True,
    delimiter: Delimiter = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    timezone: Timezone = "UTC",
    won_values: WonValues = None,
    lost_values: LostValues = None,
) -> None:
    """Train on an export plus the outcomes received through the API, and promote the new model when it is at
    least as good as the champion on the same test window (why is printed and kept in the MLflow run)."""
    from datetime import UTC, datetime

    from leadscore.settings import get_settings

    settings = get_settings()
    received = _results_store().latest_outcomes()
    folder = settings.ensure_home() / "retrain"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"outcomes-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.parquet"
    received.to_parquet(path, index=False)
    console.print(f"outcomes received through the API: {len(received):,} leads (kept in {path})")
    train(
        data=data,
        horizon_days=horizon_days or _champion_horizon(settings) or settings.horizon_days,
        promote=True,
        force=force,
        data_end=data_end,
        exclude_columns=exclude_columns,
        strict=strict,
        delimiter=delimiter,
        encoding=encoding,
        sheet=sheet,
        timezone=timezone,
        won_values=won_values,
        lost_values=lost_values,
        outcomes_file=path,
        tune=tune,
    )


def _reading_options(
    strict: bool,
    delimiter: str | None,
    encoding: str | None,
    sheet: str | None,
    decimal: str | None,
    date_format: str | None,
    dayfirst: bool | None,
    timezone: str,
) -> dict[str, object]:
    """The options that say how files are read, by name; None where not given (the Dask engine takes none)."""
    return {
        "--strict": strict or None,
        "--delimiter": delimiter,
        "--encoding": encoding,
        "--sheet": sheet,
        "--decimal": decimal,
        "--date-format": date_format,
        "--dayfirst": dayfirst,
        "--timezone": None if timezone == "UTC" else timezone,
    }


@app.command()
def score(
    data: Annotated[Path, typer.Option(help="Data directory or flat export file with the leads to score.")],
    out: Annotated[Path, typer.Option(help="Output file (.csv or .parquet).")],
    as_of: Annotated[str | None, typer.Option(help="Score as of this time (ISO 8601; default: now).")] = None,
    model: Annotated[str | None, typer.Option(help="Model URI (default: models:/leadscore@champion).")] = None,
    reasons: Annotated[bool, typer.Option(help="Add fit, engagement and top reasons (slower).")] = True,
    id_column: IdColumn = None,
    time_column: TimeColumn = None,
    label_column: LabelColumn = None,
    positive_label: PositiveLabel = "1",
    exclude_columns: ExcludeColumns = None,
    strict: Strict = False,
    delimiter: Delimiter = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    decimal: Decimal = None,
    date_format: DateFormat = None,
    dayfirst: DayFirst = None,
    timezone: Timezone = "UTC",
    engine: Engine = "local",
    scheduler: Scheduler = None,
) -> None:
    """Score every open lead: lead_id, probability, score, grade, qualified, the model and threshold versions
    that made them, and top reasons. With --engine dask, a data directory of Parquet tables is scored
    partition by partition on the cluster and --out is a folder of Parquet parts."""
    import pandas as pd
    from rich.progress import Progress

    from leadscore.settings import get_settings
    from models.registry import NoChampionModel, configure_tracking, load_model_uri
    from training.data import DataValidationError, load_crm_data, one_time
    from training.score import empty_scores, open_leads, score_chunks, write_scores

    local_only = {
        "--id-column": id_column,
        "--time-column": time_column,
        "--label-column": label_column,
        "--exclude-columns": exclude_columns,
        **_reading_options(strict, delimiter, encoding, sheet, decimal, date_format, dayfirst, timezone),
    }
    given = [name for name, value in local_only.items() if value is not None]
    if _engine(engine) == "dask" and given:
        raise typer.BadParameter(
            f"the Dask engine scores a data directory of Parquet tables as they are: {', '.join(given)} "
            "only apply with the local engine (leave out --engine dask)",
            param_hint="--engine",
        )
    settings = get_settings()
    configure_tracking(settings.resolved_tracking_uri, settings.resolved_registry_uri)
    if _engine(engine) == "local" and out.suffix not in (".csv", ".parquet"):
        raise typer.BadParameter("use a .csv or .parquet file", param_hint="--out")
    try:  # "now" is the clock's time in UTC; a time without an offset is in --timezone, as the data's times
        when = one_time(as_of, "--as-of", timezone) if as_of else pd.Timestamp.now(tz="UTC")
    except DataValidationError as err:
        reason = str(err.issues[0]).split(": ", 1)[-1]
        raise typer.BadParameter(f"not a timestamp: {reason}", param_hint="--as-of") from err
    if engine == "dask":
        _score_on_dask(data, out, when, model, reasons, scheduler)
        return
    try:
        loaded = load_model_uri(model or settings.model_uri, settings.model_cache_dir)
        dataset = load_crm_data(
            data,
            flat=_flat_options(id_column, time_column, label_column, positive_label),
            strict=strict,
            exclude_columns=_columns(exclude_columns),
            inputs=_inputs(delimiter, encoding, sheet, decimal, date_format, dayfirst, timezone, None, None),
            attribute_types=loaded.model.spec.attribute_types,  # the model's reading of each attribute
        )
    except (NoChampionModel, DataValidationError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    for line in dataset.report.reading_lines() + dataset.report.lines():
        console.print(f"[yellow]note:[/yellow] {line}")
    leads, closed, not_created = open_leads(dataset, when)
    force = _in_force_for(loaded)
    provenance: dict[str, str | int] = {"model_version": loaded.version, "threshold_version": force.version}
    with Progress(console=console) as bar:
        task = bar.add_task("scoring", total=len(leads))
        chunks = score_chunks(
            loaded.model, leads, dataset.touchpoints, when, force.cutoffs, reasons=reasons, provenance=provenance
        )
        logged = _ScoresLogged(settings, leads, dataset.touchpoints)
        empty = empty_scores(loaded.model, when, force.cutoffs, reasons, provenance)
        rows, qualified = write_scores(
            logged.passing(chunks), out, on_chunk=lambda n: bar.advance(task, n), empty=empty
        )
    console.print(
        f"scored {rows:,} open leads as of {when.isoformat()} with {loaded.name} version {loaded.version}: "
        f"{qualified:,} qualified; left out {closed:,} already closed and {not_created:,} not yet created"
    )
    console.print(logged.summary())
    typer.echo(str(out))


def _score_on_dask(data: Path, out: Path, when: Any, model: str | None, reasons: bool, scheduler: str | None) -> None:
    """``leadscore score --engine dask``: the registered model on every partition; scores as Parquet parts.
    (The score log is not written from a cluster run: its rows would be as many as the open leads.)"""
    from leadscore.settings import get_settings
    from models.registry import NoChampionModel, load_model_uri
    from training.dask_engine import ClusterUnavailable, score_dataset
    from training.data import DataValidationError

    settings = get_settings()
    try:
        loaded = load_model_uri(model or settings.model_uri, settings.model_cache_dir)
        force = _in_force_for(loaded)
        with _dask(scheduler) as client:
            summary = score_dataset(
                client,
                data,
                out,
                loaded.model,
                when,
                force.cutoffs,
                reasons=reasons,
                provenance={"model_version": loaded.version, "threshold_version": force.version},
            )
    except (NoChampionModel, DataValidationError, ClusterUnavailable) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    for line in summary.notes:
        console.print(f"[yellow]note:[/yellow] {line}")
    console.print(
        f"scored {summary.scored:,} open leads as of {when.isoformat()} with {loaded.name} version {loaded.version} "
        f"in {summary.partitions} partitions: {summary.qualified:,} qualified; left out "
        f"{summary.skipped_closed:,} already closed, {summary.skipped_not_yet_created:,} not yet created and "
        f"{summary.dropped_rows:,} invalid rows"
    )
    typer.echo(str(out))


class _ScoresLogged:
    """Appends each chunk of a ``leadscore score`` run to the score log (unless LEADSCORE_SCORE_LOG=false)."""

    def __init__(self, settings: Any, leads: Any, touches: Any) -> None:
        from datetime import UTC, datetime

        self.on = bool(settings.score_log)
        self.settings, self.leads, self.touches = settings, leads, touches
        self.scored_at = datetime.now(UTC)
        self.rows = self.handed = 0
        if self.on:
            from serving.results_store import ResultsStore
            from serving.store import make_engine

            self.store = ResultsStore(make_engine(settings.resolved_database_url))

    def passing(self, chunks: Any) -> Any:
        from serving.score_log import records_of_scores

        for frame in chunks:
            if self.on:
                records = records_of_scores(frame, self.leads, self.touches, self.scored_at, "cli")
                self.handed += self.store.append_scores(records, notify=bool(self.settings.webhook_url))
                self.rows += len(records)
            yield frame

    def summary(self) -> str:
        if not self.on:
            return "score log: off (LEADSCORE_SCORE_LOG=false)"
        return f"score log: {self.rows:,} scores kept; {self.handed:,} leads handed over for the first time"


def _in_force_for(loaded: LoadedModel) -> InForce:
    """The cut-offs in force for this model, as the server would apply them (read only), said on the console."""
    force = _ThresholdContext(model=loaded).in_force()
    console.print(f"cut-offs: threshold version {force.version}: {force.explanation}")
    return force


keys_app = typer.Typer(help="Create, list and revoke API keys (only hashes are stored).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _key_store() -> KeyStore:
    from leadscore.settings import get_settings
    from serving.store import KeyStore, make_engine

    settings = get_settings()
    settings.ensure_home()
    return KeyStore(make_engine(settings.resolved_database_url))


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="crm, marketing, sales or admin.")],
    owner: Annotated[
        str,
        typer.Option(
            help="E-mail of the person the key belongs to (for a CRM key, the person responsible for the "
            "integration). Nobody decides a threshold proposal they made, whichever of their keys they use."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="A name to recognise the key by (e.g. the CRM or person).")] = None,
) -> None:
    """Create a key; the key itself is printed once, as the last line."""
    from serving.store import InvalidKey

    try:
        key, info = _key_store().create(role, name, owner=owner)
    except InvalidKey as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    console.print(
        f"created key {info.key_id} '{info.name}' with role {info.role} for {info.owner} "
        "(store it now: it is not shown again)"
    )
    typer.echo(key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (id, name, role, owner, hint, created, revoked); never the keys themselves."""
    for k in _key_store().list():
        revoked = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        owner = k.owner or "(no owner)"
        typer.echo(f"{k.key_id}\t{k.name}\t{k.role}\t{owner}\t{k.hint}...\t{k.created_at:%Y-%m-%d %H:%M}\t{revoked}")


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key's id or name.")]) -> None:
    """Revoke a key by id or name (servers stop accepting it within seconds)."""
    n = _key_store().revoke(key)
    if n == 0:
        console.print(f"[red]error:[/red] no active key with id or name {key!r}")
        raise typer.Exit(1)
    typer.echo(f"revoked {n} key(s)")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.", min=1)] = None,
) -> None:
    """Serve the champion model over HTTP (FastAPI + uvicorn)."""
    import os
    import shutil

    import uvicorn

    from leadscore.settings import get_settings
    from serving.app import check_settings

    settings = get_settings()
    try:
        check_settings(settings)
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    home = settings.ensure_home()
    # Worker processes build their own app from the environment: pass the resolved choices on.
    os.environ["LEADSCORE_HOME"] = str(home.resolve())
    n_workers = workers or settings.workers
    if n_workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shared = home / "prometheus"  # each worker's metric values, added up by /metrics; emptied per start
        shutil.rmtree(shared, ignore_errors=True)
        shared.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    uvicorn.run(
        "serving.app:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=n_workers,
        log_level=settings.log_level,
        access_log=False,
    )


@app.command()
def healthcheck() -> None:
    """Exit 0 when LEADSCORE_HEALTH_URL (default: this host's server at LEADSCORE_PORT, /healthz) answers 200
    within 4 s, else 1: the image's HEALTHCHECK, for the server and, with the URL set to their /health, Dask
    processes."""
    import http.client
    import urllib.request

    from leadscore.settings import get_settings

    url = get_settings().resolved_health_url
    try:
        with urllib.request.urlopen(url, timeout=4) as answer:
            healthy = answer.status == 200
    except (OSError, ValueError, http.client.HTTPException) as err:  # refused, timed out, an HTTP error, not HTTP
        console.print(f"unhealthy: {url}: {err}")
        raise typer.Exit(1) from err
    if not healthy:
        console.print(f"unhealthy: {url} answered {answer.status}")
        raise typer.Exit(1)
    console.print(f"healthy: {url}")


@app.command()
def demo(
    leads: Annotated[int, typer.Option(help="Demo leads to generate (if the demo data is absent).")] = 20_000,
    port: Annotated[int | None, typer.Option(help="Port to serve on.")] = None,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Start the server at the end.")] = True,
) -> None:
    """The main job: demo data (if absent) -> train -> promote -> one key per role -> serve."""
    from leadscore.settings import get_settings

    settings = get_settings()
    home = settings.ensure_home()
    data_dir = home / "demo-data"
    if not (data_dir / "leads.parquet").exists():
        demo_data(out=data_dir, leads=leads, seed=7, format="parquet")
    else:
        console.print(f"using the demo data in {data_dir}")
    train(data=data_dir, promote=True, horizon_days=settings.horizon_days)
    console.print("API keys (store them; only hashes are kept), each belonging to ROLE@demo.example:")
    from serving.store import ROLES

    store = _key_store()
    for role in ROLES:
        key, _ = store.create(role, f"demo-{role}", owner=f"{role}@demo.example")
        typer.echo(f"  {role:<10} {key}")
    url = f"http://{settings.host}:{port or settings.port}"
    typer.echo(f"API docs: {url}/docs   health: {url}/healthz")
    if serve_after:
        serve(host=None, port=port, workers=None)


outcomes_app = typer.Typer(help="Deal outcomes (won, lost) for the feedback loop.", no_args_is_help=True)
app.add_typer(outcomes_app, name="outcomes")


def _results_store() -> Any:
    from leadscore.settings import get_settings
    from serving.results_store import ResultsStore
    from serving.store import make_engine

    settings = get_settings()
    settings.ensure_home()
    return ResultsStore(make_engine(settings.resolved_database_url))


@outcomes_app.command("import")
def outcomes_import(
    file: Annotated[Path, typer.Argument(help="An outcomes file: lead_id, outcome, closed_at, amount (optional).")],
    strict: Strict = False,
    delimiter: Delimiter = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    decimal: Decimal = None,
    date_format: DateFormat = None,
    dayfirst: DayFirst = None,
    timezone: Timezone = "UTC",
    won_values: WonValues = None,
    lost_values: LostValues = None,
) -> None:
    """Import outcomes as POST /v1/outcomes takes them, in file order: a row equal to the lead's latest changes
    nothing, another row for a lead is a correction (the latest counts), lead ids never scored are stored and
    reported."""
    from serving.results_store import OutcomeRow
    from training.data import DataValidationError, load_outcomes

    try:
        frame, report = load_outcomes(
            file,
            strict=strict,
            inputs=_inputs(
                delimiter, encoding, sheet, decimal, date_format, dayfirst, timezone, won_values, lost_values
            ),
        )
    except DataValidationError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    for line in report.reading_lines() + report.lines():
        console.print(f"[yellow]note:[/yellow] {line}")
    amounts = frame["amount"] if "amount" in frame.columns else [None] * len(frame)
    rows = [
        OutcomeRow(str(i), str(o), c.to_pydatetime(), None if a is None or a != a else float(a))
        for i, o, c, a in zip(frame["lead_id"], frame["outcome"], frame["closed_at"], amounts, strict=True)
    ]
    from serving.errors import InvalidLeadData

    try:
        receipt = _results_store().add_outcomes(rows, source=f"import:{file.name}")
    except InvalidLeadData as err:  # what the file's checks let through and the store refuses: nothing is stored
        console.print(
            f"[red]error:[/red] {file}: {err.detail} (row {err.field[2] if err.field else '?'} of the valid rows)"
        )
        raise typer.Exit(2) from err
    typer.echo(
        f"{file}: {report.rows_read.get(file.name, len(frame)):,} rows read, {report.dropped:,} dropped (see notes); "
        f"{receipt.recorded:,} recorded ({receipt.corrections:,} corrections), {receipt.unchanged:,} unchanged"
        + (f", {receipt.superseded:,} superseded by a later row of the same lead" if receipt.superseded else "")
        + f"; {receipt.unknown_leads:,} lead ids never scored"
        + (f" (first: {', '.join(receipt.unknown_lead_ids[:5])})" if receipt.unknown_leads else "")
    )


@app.command()
def performance(
    start: Annotated[
        str | None, typer.Option("--from", help="Hand-overs from this time (ISO 8601; default: 26 weeks before --to).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Hand-overs before this time (default: now).")] = None,
    by: Annotated[
        str, typer.Option(help="Cohorts: week, lead_source, campaign, model_version or threshold_version.")
    ] = "week",
    as_of: Annotated[
        str | None, typer.Option(help="Judge outcomes and maturity as of this time (default: now).")
    ] = None,
    horizon_days: Annotated[
        int | None, typer.Option(help="Horizon of a win (default: the champion's, else LEADSCORE_HORIZON_DAYS).")
    ] = None,
) -> None:
    """Realised against expected results of the leads handed over, per cohort, as GET /v1/performance."""
    from datetime import timedelta

    import pandas as pd

    from leadscore.settings import get_settings
    from models.performance import GROUPINGS
    from training.data import DataValidationError, one_time

    settings = get_settings()
    if by not in GROUPINGS:
        raise typer.BadParameter(f"one of {', '.join(GROUPINGS)}", param_hint="--by")
    try:
        moment = one_time(as_of, "--as-of") if as_of else pd.Timestamp.now(tz="UTC")
        end_t = one_time(end, "--to") if end else moment
        start_t = one_time(start, "--from") if start else end_t - timedelta(weeks=settings.performance_weeks)
    except DataValidationError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    if not start_t < end_t:
        raise typer.BadParameter("--from must be before --to", param_hint="--from")
    horizon = horizon_days or _champion_horizon(settings) or settings.horizon_days
    report = _results_store().performance(
        horizon_days=horizon,
        start=start_t.to_pydatetime(),
        end=end_t.to_pydatetime(),
        as_of=moment.to_pydatetime(),
        by=by,
    )
    typer.echo(
        f"leads handed over {report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} (UTC), by {by}; "
        f"a win counts within {horizon} days of hand-over; outcomes as known at {report.as_of:%Y-%m-%d %H:%M}"
    )
    header = (
        f"{'cohort':<40} {'status':<14} {'handed':>6} {'acc':>4} {'rej':>4} {'recyc':>5} {'mature':>6} {'won':>4} "
        f"{'precision (95% CI)':<22} {'expected':>8} {'maturing':>8} {'so far':>6} {'exp.wins':>8} "
        f"{'caught':>6} {'missed':>6} {'days':>5}"
    )
    typer.echo(header)
    for c in [*report.cohorts, report.total]:
        interval = c.realised_precision_interval
        precision = (
            f"{c.realised_precision:.1%} ({interval[0]:.1%}-{interval[1]:.1%})"
            if c.realised_precision is not None and interval
            else "-"
        )
        expected = f"{c.expected_precision:.1%}" if c.expected_precision is not None else "-"
        days = f"{c.median_days_to_hand_over:.1f}" if c.median_days_to_hand_over is not None else "-"
        typer.echo(
            f"{c.cohort:<40} {c.status:<14} {c.handed_over:>6} {c.accepted:>4} {c.rejected:>4} {c.recycled:>5} "
            f"{c.mature:>6} {c.won_within_horizon:>4} {precision:<22} {expected:>8} {c.maturing:>8} "
            f"{c.wins_so_far:>6} {c.expected_wins:>8.1f} {c.wins_caught:>6} {c.wins_missed:>6} {days:>5}"
        )
    if report.total.rejected_by_reason:
        typer.echo(
            "rejected by reason: "
            + ", ".join(f"{k} {v}" for k, v in sorted(report.total.rejected_by_reason.items(), key=lambda kv: -kv[1]))
        )
    typer.echo(f"wins of leads never scored before they closed: {report.wins_not_scored}")
    if report.calibration:
        typer.echo("calibration of first scores (leads per group, mean probability -> share won, 95% CI):")
        for b in report.calibration:
            typer.echo(
                f"  {b.leads:>6}  {b.mean_probability:6.1%} -> {b.observed_rate:6.1%} "
                f"({b.interval[0]:.1%}-{b.interval[1]:.1%})"
            )


def _champion_horizon(settings: Any) -> int | None:
    """The champion's horizon (days), or None when there is no champion."""
    from models.registry import NoChampionModel, configure_tracking, load_model_uri

    configure_tracking(settings.resolved_tracking_uri, settings.resolved_registry_uri)
    try:
        loaded = load_model_uri(settings.model_uri, settings.model_cache_dir)
    except NoChampionModel:
        return None
    horizon = loaded.model.meta.get("horizon_days")
    return int(horizon) if horizon else None


threshold_app = typer.Typer(help="The qualified-lead threshold: trade-off, proposals, decisions.", no_args_is_help=True)
app.add_typer(threshold_app, name="threshold")
ApiKey = Annotated[str, typer.Option(envvar="LEADSCORE_API_KEY", help="Your API key (marketing or sales).")]


class _ThresholdContext:
    """The threshold store and service over the same code the server uses; the model is looked up when needed."""

    def __init__(self, model: LoadedModel | None = None) -> None:
        from leadscore.settings import get_settings
        from serving.model_source import RegistrySource
        from serving.store import KeyStore, make_engine
        from serving.thresholds import ThresholdService, ThresholdStore

        self.settings = get_settings()
        self.settings.ensure_home()
        engine = make_engine(self.settings.resolved_database_url)
        self.keys = KeyStore(engine)
        self.store = ThresholdStore(engine)
        self.service = ThresholdService(self.store)
        self.source = RegistrySource(
            self.settings.resolved_tracking_uri,
            self.settings.resolved_registry_uri,
            model.name if model else self.settings.model_name,
            self.settings.model_alias,
            self.settings.model_cache_dir,
        )
        self._model = model

    @property
    def champion(self) -> LoadedModel:
        """The model given, else the one behind the served alias (exit 2 when there is none)."""
        if self._model is None:
            version = self.source.current_version()
            if version is None:
                console.print(
                    f"[red]error:[/red] no model is aliased {self.settings.model_uri}; train with --promote first"
                )
                raise typer.Exit(2)
            self._model = self.source.fetch(version)
        return self._model

    def tradeoff(self, version: str) -> TradeOff:
        from serving.thresholds import tradeoff_of

        return tradeoff_of(self.champion if version == self.champion.version else self.source.fetch(version))

    def in_force(self) -> InForce:
        """What is in force for the model: read only (only the server opens mapped proposals)."""
        model = self.champion
        return self.service.refresh(model.name, model.version, model.model.default_cutoffs)

    def who(self, key: str) -> Principal:
        principal = self.keys.authenticate(key)
        if principal is None:
            console.print("[red]error:[/red] unknown or revoked API key")
            raise typer.Exit(2)
        return principal


def _print_policy(p: Policy) -> None:
    typer.echo(
        f"version {p.id}  {p.status:<10} cut-off {p.cutoff:.4f}  grades A>={p.grades.a:.4f} B>={p.grades.b:.4f} "
        f"C>={p.grades.c:.4f}  model {p.model_name} v{p.model_version}  by {p.proposed_by} ({p.proposed_role}"
        f"{', ' + p.proposed_owner if p.proposed_owner else ''})"
        f"  {p.created_at:%Y-%m-%d %H:%M}  reason: {p.reason}"
    )
    for d in p.decisions:
        owner = f", {d['owner']}" if d.get("owner") else ""
        typer.echo(f"    {d['decision']} by {d['by']} ({d['role']}{owner}) {d['at']:%Y-%m-%d %H:%M} {d['reason']}")


def _service_errors(func: Callable[..., None]) -> Callable[..., None]:
    """Domain errors of the threshold service become a message and exit code 2."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from serving.errors import ServingError

        try:
            return func(*args, **kwargs)
        except ServingError as err:
            console.print(f"[red]error ({err.status_code}):[/red] {err.detail}")
            raise typer.Exit(2) from err

    return wrapper


@threshold_app.command("show")
@_service_errors
def threshold_show() -> None:
    """The active policy and the cut-offs in force for the champion."""
    ctx = _ThresholdContext()
    force = ctx.in_force()
    c = force.cutoffs
    typer.echo(
        f"model {ctx.champion.name} version {ctx.champion.version}: qualified at p >= {c.qualified:.4f}; "
        f"A >= {c.a:.4f}, B >= {c.b:.4f}, C >= {c.c:.4f} (threshold version {force.version})"
    )
    typer.echo(f"in force: {force.explanation}")
    if force.applied is not None and force.applied is not force.policy:
        _print_policy(force.applied)
    if force.policy:
        typer.echo("last agreed policy:")
        _print_policy(force.policy)
    for p in force.pending:
        if p is not force.applied:
            typer.echo("awaiting a decision:")
            _print_policy(p)


@threshold_app.command("analyze")
@_service_errors
def threshold_analyze(
    cutoff: Annotated[float | None, typer.Option(help="Figures at this probability cut-off.")] = None,
    leads_per_week: Annotated[
        float | None, typer.Option(help="The lowest cut-off within this sales capacity (leads handed over per week).")
    ] = None,
    min_precision: Annotated[
        float | None, typer.Option(help="The lowest cut-off whose handed-over leads reach this precision.")
    ] = None,
    min_recall: Annotated[
        float | None, typer.Option(help="The highest cut-off that hands over this share of the won leads.")
    ] = None,
) -> None:
    """The replayed trade-off for a cut-off, in leads, with 95% intervals; exit 2 when no cut-off reaches it."""
    from models.threshold_analysis import Figure, Unreachable

    given = [v for v in (cutoff, leads_per_week, min_precision, min_recall) if v is not None]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --cutoff, --leads-per-week, --min-precision, --min-recall")
    # The same bounds as the API's query parameters (/v1/threshold/analysis).
    for name, value, high, high_open in (
        ("--cutoff", cutoff, 1.0, True),
        ("--leads-per-week", leads_per_week, 1e9, False),
        ("--min-precision", min_precision, 1.0, False),
        ("--min-recall", min_recall, 1.0, False),
    ):
        if value is not None and not (value > 0 and (value < high if high_open else value <= high)):
            bound = f"below {high:g}" if high_open else f"at most {high:g}"
            raise typer.BadParameter(f"must be above 0 and {bound} (got {value})", param_hint=name)
    ctx = _ThresholdContext()
    trade = ctx.tradeoff(ctx.champion.version)
    try:
        if cutoff is not None:
            chosen = cutoff
        elif leads_per_week is not None:
            chosen = trade.cutoff_for_capacity(leads_per_week)
        elif min_precision is not None:
            chosen = trade.cutoff_for_precision(min_precision)
        else:
            assert min_recall is not None
            chosen = trade.cutoff_for_recall(min_recall)
    except Unreachable as err:
        console.print(f"[red]unreachable:[/red] {err}")
        raise typer.Exit(2) from err
    a = trade.analyze(chosen)
    won = (
        f"won within {a.horizon_days} days of hand-over"
        if a.horizon_days is not None
        else "converted (the export's label; no time column)"
    )
    typer.echo(
        f"cut-off {a.cutoff:.4f} (model version {ctx.champion.version}); replayed on {a.test_leads} test leads "
        f"({a.test_moments} scoring moments, {a.test_wins} won"
        + (f"; each followed for its first {a.follow_up_days} days" if a.follow_up_days else "")
        + f"), inflow {a.leads_per_week:.1f} new leads/week"
        + (f" ({a.leads_per_week_basis})" if a.leads_per_week_basis else "")
    )
    typer.echo(
        f"  test leads handed over: {a.leads_handed_over}, of which {won}: "
        f"{a.wins_after_hand_over}; won test leads caught: {a.wins_caught} of {a.test_wins}"
    )
    rows: list[tuple[str, Figure | None, str]] = [
        ("leads handed over per week", a.qualified_per_week, "{:.1f}"),
        ("share of leads handed over", a.share_qualified, "{:.1%}"),
        (f"precision ({won})", a.precision, "{:.1%}"),
        (
            "recall (won leads handed over before close)"
            if a.horizon_days is not None
            else "recall (converted leads handed over)",
            a.recall,
            "{:.1%}",
        ),
        (
            "expected wins per week (won after hand-over)"
            if a.horizon_days is not None
            else "expected wins per week (converted, handed over)",
            a.expected_wins_per_week,
            "{:.1f}",
        ),
        (f"lift over the base rate {a.base_rate:.1%}", a.lift, "{:.2f}x"),
    ]
    if a.horizon_days is not None:  # without time every lead is scored once, at an unknown creation time
        rows.append(("median days to hand-over", a.median_days_to_hand_over, "{:.1f} days"))
    for label, f, fmt in rows:
        if f is None:
            typer.echo(f"  {label:<46} (no lead handed over)")
        else:
            typer.echo(f"  {label:<46} {fmt.format(f.value):>12}   95% [{fmt.format(f.low)}, {fmt.format(f.high)}]")


@threshold_app.command("propose")
@_service_errors
def threshold_propose(
    cutoff: Annotated[float, typer.Option(help="Probability at or above which a lead is qualified.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit history).")],
    key: ApiKey,
    grade_a: Annotated[float | None, typer.Option(help="Lower bound of grade A (default: current).")] = None,
    grade_b: Annotated[float | None, typer.Option(help="Lower bound of grade B (default: current).")] = None,
    grade_c: Annotated[float | None, typer.Option(help="Lower bound of grade C (default: current).")] = None,
) -> None:
    """Propose a threshold (marketing or sales key); the other side approves."""
    from serving.thresholds import Grades

    ctx = _ThresholdContext()
    who = ctx.who(key)
    current = ctx.in_force().cutoffs
    grades = Grades(grade_a or current.a, grade_b or current.b, grade_c or current.c)
    policy = ctx.store.propose(who, ctx.champion.name, ctx.champion.version, cutoff, grades, reason)
    _print_policy(policy)


@threshold_app.command("approve")
@_service_errors
def threshold_approve(
    version: Annotated[int, typer.Argument(help="The proposal's version.")],
    key: ApiKey,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit history).")] = "",
) -> None:
    """Approve a proposal from the other side; it is active at once."""
    ctx = _ThresholdContext()
    _print_policy(ctx.store.decide(version, ctx.who(key), True, reason, ctx.champion.version))


@threshold_app.command("reject")
@_service_errors
def threshold_reject(
    version: Annotated[int, typer.Argument(help="The proposal's version.")],
    key: ApiKey,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit history).")] = "",
) -> None:
    """Reject a proposal from the other side."""
    ctx = _ThresholdContext()
    _print_policy(ctx.store.decide(version, ctx.who(key), False, reason))


@threshold_app.command("history")
@_service_errors
def threshold_history() -> None:
    """Every policy ever proposed, with its decisions (append-only)."""
    for p in _ThresholdContext().store.history():
        _print_policy(p)


def keep_compiled_code() -> None:
    """Point numba's on-disk cache (``NUMBA_CACHE_DIR`` if set, else ``LEADSCORE_COMPILE_CACHE_DIR``, else
    ``numba-cache`` under home) at a folder that can be written, before anything imports numba: this process
    and the ones it starts (server workers, Dask workers) then load the compiled feature and tree code
    instead of compiling it again (seconds per process). No writable folder: compile in memory."""
    import os

    from pydantic import ValidationError

    from leadscore.settings import get_settings

    try:
        settings = get_settings()
    except ValidationError:  # said by the command that needs the setting; --help and the rest still work
        return
    given = os.environ.get("NUMBA_CACHE_DIR")
    folder = Path(given) if given else settings.compile_cache_dir or settings.home / "numba-cache"
    if writable(folder):
        os.environ["NUMBA_CACHE_DIR"] = str(folder.resolve())
    else:  # numba would fall back to the package's own folders: compile in memory instead
        os.environ.pop("NUMBA_CACHE_DIR", None)


def writable(folder: Path) -> bool:
    """Whether ``folder`` can be written, or created under its nearest existing parent (nothing is created)."""
    import os

    probe = folder.resolve()
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def main() -> None:
    """The console script: the commands, with a setting that does not hold (``LEADSCORE_*``) said in one line
    per setting, exit code 2, instead of a traceback."""
    from pydantic import ValidationError

    try:
        keep_compiled_code()
        app()
    except ValidationError as err:
        for error in err.errors():
            name = "LEADSCORE_" + "_".join(str(part) for part in error["loc"]).upper()
            console.print(f"[red]error:[/red] setting {name}: {error['msg']}")
        raise SystemExit(2) from None
