"""The numbers the summary and the panels both show are worked out once: they agree, to the summary's
rounding, whatever the range and filters."""

from __future__ import annotations

import pytest

from ccmetrics.panels import PANELS_BY_ID, PanelRequest
from ccmetrics.store import numbers
from ccmetrics.store.filters import Filters
from ccmetrics.store.summary import summary

from .test_queries import RANGES, select, store  # noqa: F401 - the filled store, as a fixture

SHARED = {  # summary field: (panel, places the summary rounds to)
    "cache_efficiency": ("cache_efficiency", 6),
    "cost_per_1k_output_tokens": ("cost_per_1k_output", 9),
    "productivity_ratio": ("productivity_ratio", 6),
    "avg_prompt_length": ("avg_prompt_length", 3),
    "api_requests": ("api_requests", None),
    "api_errors": ("api_errors", None),
}


@pytest.mark.parametrize("name", ["across midnight", "whole days", "all time"])
@pytest.mark.parametrize("attrs", [{}, {"team.id": "platform"}, {"session.id": "s2"}])
def test_the_summary_and_the_panels_show_the_same_numbers(store, name, attrs):  # noqa: F811
    since, until = RANGES[name]
    selection = select(store, since, until, **attrs)
    answer = summary(store.reader(), Filters(since, until, tuple(attrs.items())))
    request = PanelRequest(selection, since or 0, until or 0)
    for field, (panel, places) in SHARED.items():
        shown = PANELS_BY_ID[panel].data(request)["value"]
        assert answer[field] == (shown if places is None or shown is None else round(shown, places)), field
    assert answer["productivity_ratio"] is None  # no active time: a zero denominator
    assert answer["cache_efficiency"] == round(numbers.cache_efficiency(selection) or 0, 6)
    lines = answer["lines_of_code"]
    assert PANELS_BY_ID["lines_net"].data(request)["value"] == lines["added"] - lines["removed"]
