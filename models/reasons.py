"""Turn feature contributions into sentences a salesperson understands."""

from __future__ import annotations

import math

from features.kernel import NEVER_DAYS
from features.spec import FeatureInfo

TOUCH_PHRASES = {
    "ad_impression": ("saw an ad", "ad impressions"),
    "ad_click": ("clicked an ad", "ad clicks"),
    "social_engagement": ("engaged on social media", "social engagements"),
    "email_open": ("opened an email", "email opens"),
    "email_click": ("clicked an email", "email clicks"),
    "web_visit": ("visited the website", "website visits"),
    "pricing_page": ("viewed the pricing page", "pricing page views"),
    "content_download": ("downloaded content", "content downloads"),
    "webinar": ("attended a webinar", "webinars attended"),
    "event": ("attended an event", "events attended"),
    "form_fill": ("filled in a form", "form fills"),
    "demo_request": ("requested a demo", "demo requests"),
    "call": ("had a sales call", "sales calls"),
    "meeting": ("met with sales", "meetings"),
    "demo": ("had a demo", "demos"),
    "proposal": ("received a proposal", "proposals"),
    "other": ("had another touch", "other touches"),
}


def _days(value: float) -> str:
    d = int(round(value))
    if d <= 0:
        return "today"
    if d == 1:
        return "1 day ago"
    return f"{d} days ago"


def _window(window: int | None) -> str:
    return "ever" if window is None else f"in the last {window} days"


def _count(value: float) -> int:
    return 0 if math.isnan(value) else int(round(value))


def describe(info: FeatureInfo, value: float, raw_value: object = None) -> str:
    """One sentence for a feature and its value, e.g. ``Requested a demo 3 days ago``."""
    kind = info.kind
    if kind == "flag" and info.touch_type:
        verb = TOUCH_PHRASES.get(info.touch_type, (info.touch_type.replace("_", " "),))[0]
        if value >= NEVER_DAYS:
            return f"Never {verb}"
        return f"{verb[0].upper()}{verb[1:]} {_days(value)}"
    if kind == "count" and info.touch_type:
        noun = TOUCH_PHRASES.get(info.touch_type, ("", info.touch_type.replace("_", " ")))[1]
        n = _count(value)
        return f"No {noun} {_window(info.window_days)}" if n == 0 else f"{n} {noun} {_window(info.window_days)}"
    if kind == "total":
        n = _count(value)
        return f"No activity {_window(info.window_days)}" if n == 0 else f"{n} touches {_window(info.window_days)}"
    if kind == "channel_count" and info.channel:
        channel = info.channel.replace("_", " ")
        n = _count(value)
        return (
            f"No {channel} touches {_window(info.window_days)}"
            if n == 0
            else f"{n} {channel} touches {_window(info.window_days)}"
        )
    if info.name == "days_since_last_touch":
        return "No touches yet" if value >= NEVER_DAYS else f"Last activity {_days(value)}"
    if info.name == "days_since_first_touch":
        return "No touches yet" if value >= NEVER_DAYS else f"First touch {_days(value)}"
    if kind == "decayed":
        return "Strong recent engagement" if value >= 5 else "Little recent engagement"
    if kind == "velocity":
        n = _count(value)
        if n > 0:
            return f"Activity rising ({n} more touches than the month before)"
        if n < 0:
            return f"Activity falling ({-n} fewer touches than the month before)"
        return "Activity level unchanged from the month before"
    if kind == "distinct":
        return f"Engaged through {_count(value)} channel(s)"
    if kind == "age":
        return f"Lead created {_days(value)}"
    if kind == "attribute" and info.attribute:
        if raw_value is None or (isinstance(raw_value, float) and math.isnan(raw_value)):
            return f"{info.attribute.replace('_', ' ').capitalize()} unknown"
        shown = f"{raw_value:g}" if isinstance(raw_value, float) else str(raw_value).replace("_", " ")
        return f"{info.attribute.replace('_', ' ').capitalize()}: {shown}"
    return f"{info.name} = {value:g}"
