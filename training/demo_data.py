"""A realistic synthetic B2B CRM, deterministic by seed.

Assumptions (what the generator builds in, and why):

* **Inflow.** Leads arrive over ``days`` (default 540, about 18 months) from 2025-01-01, more on weekdays,
  fewer in August and late December (seasonality).
* **Fit.** Firmographics and lead source shift conversion odds: larger companies, senior job levels,
  software/finance and referral/event/demo-request sources convert more; students and tiny companies less.
  The channel mix drifts (paid social grows, events shrink) so out-of-time validation matters.
* **Intent.** A hidden per-lead intent drives behaviour (how many touches, how many high-intent touches
  such as pricing page, webinars, demo requests) and conversion. Neither fit nor intent alone explains
  outcomes, and a bit of pure noise is added.
* **Funnel.** Marketing touches (ads, social, email, web, pricing page, content, webinars, events, form
  fills) come first; a lead turns warm after 3 to 5 of them, and a share of warm leads is accepted by sales
  (more for high fit and intent), who then call, meet, demo and propose. Accepted leads close won or lost
  after a lognormal cycle (weeks to months, median about 45 days); other leads may be disqualified (lost)
  or stay open. Anything after the end of the data is not seen: those leads are still open.
  Won deals typically see 5 to 15 touches before the close; the base win rate is a few percent.
* **Noise.** About 1% bots (bursts of web visits, never convert), about 2% duplicated touches, leads with no
  touches at all, missing attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2025-01-01", tz="UTC")
DAY_NS = 86_400 * 10**9
CHUNK = 100_000

SOURCES = (
    "paid_search",
    "organic_search",
    "paid_social",
    "referral",
    "event",
    "partner",
    "outbound",
    "content_syndication",
)
SOURCE_FIT = np.array([0.0, 0.2, -0.5, 0.9, 0.5, 0.4, -0.3, -0.6])
SOURCE_MIX_START = np.array([0.22, 0.18, 0.08, 0.08, 0.14, 0.10, 0.12, 0.08])
SOURCE_MIX_END = np.array([0.20, 0.16, 0.22, 0.09, 0.06, 0.09, 0.10, 0.08])
INDUSTRIES = ("software", "finance", "healthcare", "manufacturing", "retail", "education", "government", "other")
INDUSTRY_FIT = np.array([0.6, 0.4, 0.1, 0.0, -0.2, -0.4, -0.3, -0.2])
INDUSTRY_P = np.array([0.22, 0.12, 0.11, 0.13, 0.12, 0.10, 0.06, 0.14])
SIZES = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+")
SIZE_FIT = np.array([-0.9, -0.3, 0.2, 0.5, 0.6, 0.4])
SIZE_P = np.array([0.20, 0.24, 0.22, 0.17, 0.10, 0.07])
LEVELS = ("c_level", "vp", "director", "manager", "individual_contributor", "student")
LEVEL_FIT = np.array([0.5, 0.6, 0.5, 0.2, -0.3, -1.5])
LEVEL_P = np.array([0.06, 0.08, 0.16, 0.28, 0.36, 0.06])
COUNTRIES = ("US", "GB", "DE", "FR", "CA", "AU", "IN", "BR", "NL", "ES")
COUNTRY_P = np.array([0.38, 0.10, 0.09, 0.07, 0.06, 0.05, 0.12, 0.05, 0.04, 0.04])
COUNTRY_FIT = np.array([0.2, 0.1, 0.1, 0.0, 0.1, 0.1, -0.4, -0.3, 0.1, -0.1])

MARKETING = (
    "ad_impression",
    "ad_click",
    "social_engagement",
    "email_open",
    "email_click",
    "web_visit",
    "pricing_page",
    "content_download",
    "webinar",
    "event",
    "form_fill",
)
# Base propensity of each marketing touch, and how much intent tilts towards it.
MKT_BASE = np.array([1.0, 0.6, 0.5, 1.6, 0.7, 1.6, 0.25, 0.35, 0.2, 0.12, 0.2])
MKT_INTENT = np.array([-0.3, 0.1, -0.1, 0.0, 0.3, 0.2, 0.9, 0.5, 0.6, 0.4, 0.7])
MKT_CHANNEL = {
    "ad_impression": ("display", "paid_search", "paid_social"),
    "ad_click": ("paid_search", "paid_social", "display"),
    "social_engagement": ("linkedin", "twitter", "facebook"),
    "email_open": ("email",),
    "email_click": ("email",),
    "web_visit": ("web", "organic_search"),
    "pricing_page": ("web",),
    "content_download": ("web", "content_syndication"),
    "webinar": ("webinar",),
    "event": ("event",),
    "form_fill": ("web",),
    "demo_request": ("web",),
    "call": ("phone",),
    "meeting": ("sales",),
    "demo": ("sales",),
    "proposal": ("sales",),
}


@dataclass(frozen=True)
class DemoData:
    leads: pd.DataFrame
    touchpoints: pd.DataFrame
    outcomes: pd.DataFrame
    end: pd.Timestamp


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _day_weights(days: int) -> np.ndarray:
    dates = pd.date_range(START, periods=days, freq="D")
    weekday = np.where(dates.day_of_week < 5, 1.0, 0.35)
    month = np.where(dates.month == 8, 0.75, 1.0) * np.where((dates.month == 12) & (dates.day > 18), 0.5, 1.0)
    growth = np.linspace(0.85, 1.15, days)
    w = weekday * month * growth
    return w / w.sum()


def _pick(rng: np.random.Generator, options: tuple[str, ...], p: np.ndarray, n: int) -> np.ndarray:
    return rng.choice(len(options), size=n, p=p)


def _chunk(
    rng: np.random.Generator, first_id: int, n: int, days: int, end_ns: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    start_ns = START.value
    day = rng.choice(days, size=n, p=_day_weights(days))
    created = start_ns + day * DAY_NS + rng.integers(7 * 3600, 20 * 3600, size=n) * 10**9
    frac = day / max(days - 1, 1)

    # Fit: firmographics and source (with a drifting channel mix).
    mix = SOURCE_MIX_START[None, :] * (1 - frac[:, None]) + SOURCE_MIX_END[None, :] * frac[:, None]
    cum = mix.cumsum(axis=1)
    source = (rng.random(n)[:, None] > cum).sum(axis=1).clip(0, len(SOURCES) - 1)
    industry = _pick(rng, INDUSTRIES, INDUSTRY_P, n)
    size = _pick(rng, SIZES, SIZE_P, n)
    level = _pick(rng, LEVELS, LEVEL_P, n)
    country = _pick(rng, COUNTRIES, COUNTRY_P, n)
    social_quality = np.where(SOURCES.index("paid_social") == source, 0.6 * frac, 0.0)  # drift in quality too
    fit = (
        SOURCE_FIT[source]
        + INDUSTRY_FIT[industry]
        + SIZE_FIT[size]
        + LEVEL_FIT[level]
        + COUNTRY_FIT[country]
        + social_quality
    )
    intent = rng.normal(0.0, 1.0, n)
    bot = rng.random(n) < 0.01

    # Funnel: marketing touches, warm-up, sales acceptance, close.
    warm_after = rng.integers(3, 6, size=n)  # 3 to 5 touches before a lead turns warm
    # Interactions a points sheet or a linear model cannot see: enterprise leads met at events or through
    # referrals are accepted and close far more often; engaged students research rather than buy; so do
    # tiny companies from paid social.
    enterprise_warm = (size >= 3) & np.isin(source, (SOURCES.index("event"), SOURCES.index("referral")))
    student = level == LEVELS.index("student")
    tiny_social = (size == 0) & (source == SOURCES.index("paid_social"))
    twist = 1.2 * enterprise_warm - 2.5 * (student & (intent > 0)) - 1.5 * tiny_social
    accepted = (rng.random(n) < _sigmoid(-2.4 + 0.9 * intent + 0.7 * fit + twist)) & ~bot
    n_mkt = rng.poisson(np.exp(0.9 + 0.45 * intent + 0.1 * fit))
    n_mkt = np.where(accepted, np.maximum(n_mkt, warm_after), n_mkt)
    no_touch = (rng.random(n) < 0.06) & ~accepted
    n_mkt = np.where(no_touch, 0, n_mkt)
    gap_scale = np.exp(2.3 - 0.35 * intent)  # days between marketing touches, shorter with intent
    accept_delay = np.where(accepted, warm_after * gap_scale * rng.gamma(2.0, 0.5, n), np.inf)
    won_given = _sigmoid(-1.4 + 0.9 * fit + 0.8 * intent + twist + rng.normal(0, 0.6, n))
    won = accepted & (rng.random(n) < won_given)
    cycle = np.exp(rng.normal(np.log(45), 0.5, n)) * np.where(won, 1.0, 0.8)
    close_days = np.where(accepted, accept_delay + cycle, np.inf)
    disqualified = ~accepted & (rng.random(n) < 0.35)
    close_days = np.where(disqualified, rng.uniform(20, 220, n), close_days)
    closed_ns = created + (np.where(np.isfinite(close_days), close_days, 0) * 86_400).astype(np.int64) * 10**9
    has_close = np.isfinite(close_days) & (closed_ns <= end_ns)

    # Marketing touches: spread with exponential gaps from creation; high-intent types later on.
    lead_of = np.repeat(np.arange(n), n_mkt)
    k = n_mkt.sum()
    within = np.arange(k) - np.repeat(np.cumsum(n_mkt) - n_mkt, n_mkt)
    gaps = rng.exponential(1.0, k) * gap_scale[lead_of]
    offset_days = np.zeros(k)
    if k:
        csum = np.cumsum(gaps)
        group_start = np.repeat(np.cumsum(n_mkt) - n_mkt, n_mkt)
        base = np.where(group_start > 0, csum[np.maximum(group_start - 1, 0)], 0.0)
        offset_days = csum - base - gaps[group_start] * (within == 0)  # first touch at creation
    logits = np.log(MKT_BASE)[None, :] + MKT_INTENT[None, :] * intent[lead_of][:, None]
    later = (within >= 2)[:, None] * MKT_INTENT[None, :] * 0.5
    probs = np.exp(logits + later)
    probs /= probs.sum(axis=1, keepdims=True)
    mkt_type = (rng.random(k)[:, None] > probs.cumsum(axis=1)).sum(axis=1).clip(0, len(MARKETING) - 1)
    types = [np.array(MARKETING, dtype=object)[mkt_type]]
    leads_idx = [lead_of]
    offsets = [offset_days]

    # Warm leads accepted by sales: a demo request (or form fill) at acceptance, then sales touches.
    acc = np.flatnonzero(accepted)
    leads_idx.append(acc)
    types.append(
        np.where(rng.random(len(acc)) < 0.55 + 0.1 * intent[acc].clip(-2, 2), "demo_request", "form_fill").astype(
            object
        )
    )
    offsets.append(accept_delay[acc])
    n_calls = rng.integers(1, 5, size=len(acc))
    n_meet = rng.integers(0, 3, size=len(acc))
    has_demo = rng.random(len(acc)) < np.where(won[acc], 0.85, 0.45)
    has_prop = rng.random(len(acc)) < np.where(won[acc], 0.9, 0.3)
    for name, counts, span in (("call", n_calls, 0.6), ("meeting", n_meet, 0.7)):
        who = np.repeat(acc, counts)
        leads_idx.append(who)
        types.append(np.full(len(who), name, dtype=object))
        offsets.append(accept_delay[who] + rng.uniform(0.02, span, len(who)) * cycle[who])
    for name, mask, lo, hi in (("demo", has_demo, 0.2, 0.6), ("proposal", has_prop, 0.6, 0.95)):
        who = acc[mask]
        leads_idx.append(who)
        types.append(np.full(len(who), name, dtype=object))
        offsets.append(accept_delay[who] + rng.uniform(lo, hi, len(who)) * cycle[who])

    # Bots: a burst of web visits within a day.
    bots = np.flatnonzero(bot)
    n_burst = rng.integers(30, 120, size=len(bots))
    who = np.repeat(bots, n_burst)
    leads_idx.append(who)
    types.append(np.full(len(who), "web_visit", dtype=object))
    offsets.append(rng.uniform(0, 1, len(who)))

    t_lead = np.concatenate(leads_idx)
    t_type = np.concatenate(types)
    t_time = created[t_lead] + (np.concatenate(offsets) * 86_400).astype(np.int64) * 10**9  # whole seconds
    # Nothing after the close is logged except some nurture email; nothing after the end of the data.
    cutoff = np.where(has_close, closed_ns, end_ns)[t_lead]
    keep = (t_time <= cutoff) & (t_time <= end_ns)
    t_lead, t_type, t_time = t_lead[keep], t_type[keep], t_time[keep]
    dup = rng.random(len(t_lead)) < 0.02
    t_lead = np.concatenate([t_lead, t_lead[dup]])
    t_type = np.concatenate([t_type, t_type[dup]])
    t_time = np.concatenate([t_time, t_time[dup]])

    channel = np.empty(len(t_type), dtype=object)
    campaign = np.empty(len(t_type), dtype=object)
    pick = rng.random(len(t_type))
    for name, options in MKT_CHANNEL.items():
        sel = t_type == name
        channel[sel] = np.array(options, dtype=object)[(pick[sel] * len(options)).astype(int)]
    quarter = pd.DatetimeIndex(t_time.astype("datetime64[ns]")).quarter.to_numpy()
    year = pd.DatetimeIndex(t_time.astype("datetime64[ns]")).year.to_numpy()
    campaign[:] = [f"{y}q{q}-{c}" for y, q, c in zip(year, quarter, channel, strict=True)]
    campaign[np.isin(t_type, ("call", "meeting", "demo", "proposal"))] = None
    value = np.where(t_type == "web_visit", np.round(rng.exponential(2.5, len(t_type)), 1), np.nan)

    ids = np.array([f"L{first_id + i:07d}" for i in range(n)], dtype=object)
    missing = rng.random((n, 3)) < np.array([0.08, 0.05, 0.12])
    leads = pd.DataFrame(
        {
            "lead_id": ids,
            "created_at": pd.to_datetime(created, utc=True),
            "lead_source": np.array(SOURCES, dtype=object)[source],
            "industry": np.where(missing[:, 0], None, np.array(INDUSTRIES, dtype=object)[industry]),
            "company_size": np.where(missing[:, 1], None, np.array(SIZES, dtype=object)[size]),
            "country": np.array(COUNTRIES, dtype=object)[country],
            "job_level": np.where(missing[:, 2], None, np.array(LEVELS, dtype=object)[level]),
            "annual_revenue_musd": np.where(
                rng.random(n) < 0.3, np.nan, np.round(np.exp(rng.normal(1.5 + 0.8 * size, 0.8)), 1)
            ),
        }
    )
    touches = pd.DataFrame(
        {
            "lead_id": ids[t_lead],
            "occurred_at": pd.to_datetime(t_time, utc=True),
            "touch_type": t_type,
            "channel": channel,
            "campaign": campaign,
            "value": value,
        }
    )
    touches = touches.sort_values(["occurred_at", "lead_id"], kind="stable").reset_index(drop=True)
    closed = np.flatnonzero(has_close)
    outcomes = pd.DataFrame(
        {
            "lead_id": ids[closed],
            "outcome": np.where(won[closed], "won", "lost"),
            "closed_at": pd.to_datetime(closed_ns[closed], utc=True),
            "amount": np.where(won[closed], np.round(np.exp(rng.normal(9.8 + 0.2 * size[closed], 0.6)), -2), np.nan),
        }
    )
    return leads, touches, outcomes


def generate_demo_data(n_leads: int = 20_000, seed: int = 7, days: int = 540) -> DemoData:
    """Generate a synthetic CRM of ``n_leads`` leads over ``days`` days, deterministic by ``seed``."""
    end = START + pd.Timedelta(days=days)
    seeds = np.random.SeedSequence(seed).spawn(max(1, -(-n_leads // CHUNK)))
    parts = []
    for i, child in enumerate(seeds):
        n = min(CHUNK, n_leads - i * CHUNK)
        parts.append(_chunk(np.random.default_rng(child), i * CHUNK + 1, n, days, end.value))
    leads = pd.concat([p[0] for p in parts], ignore_index=True)
    touches = pd.concat([p[1] for p in parts], ignore_index=True)
    outcomes = pd.concat([p[2] for p in parts], ignore_index=True)
    return DemoData(leads=leads, touchpoints=touches, outcomes=outcomes, end=end)


def write_demo_data(out: Path, n_leads: int = 20_000, seed: int = 7, fmt: str = "parquet") -> DemoData:
    """Generate demo data and write ``leads``, ``touchpoints`` and ``outcomes`` tables into ``out``."""
    from training.data import write_table

    data = generate_demo_data(n_leads=n_leads, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("leads", data.leads), ("touchpoints", data.touchpoints), ("outcomes", data.outcomes)):
        write_table(frame, out / f"{name}.{fmt}")
    return data
