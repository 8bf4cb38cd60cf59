"""The range planner: which parts of a range are read from the daily rollups, the hourly ones, and raw."""

from __future__ import annotations

from ccmetrics.store.ranges import ROLLUPS, RangePart, plan, split

SECOND = 1_000_000_000
MINUTE, HOUR, DAY = 60 * SECOND, 3600 * SECOND, 86400 * SECOND
WEEK = 7 * DAY
NOW = 100 * DAY + 13 * HOUR + 20 * MINUTE  # day 100, 13:20
TODAY = 100 * DAY


def test_ranges_split_into_days_hours_and_raw_edges():
    hour, day = HOUR, DAY
    tiers = [("day", day), ("hour", hour)]
    lo, hi = 3 * day - 90 * 60 * SECOND, 6 * day + 2 * hour + 5 * SECOND
    assert split(lo, hi, tiers) == [
        ("raw", lo, 3 * day - hour),
        ("hour", 3 * day - hour, 3 * day),
        ("day", 3 * day, 6 * day),
        ("hour", 6 * day, 6 * day + 2 * hour),
        ("raw", 6 * day + 2 * hour, hi),
    ]
    assert split(None, None, tiers) == [("day", None, None)]
    assert split(None, 2 * day + 5, tiers) == [("day", None, 2 * day), ("raw", 2 * day, 2 * day + 5)]
    assert split(hour + 1, hour + 2, tiers) == [("raw", hour + 1, hour + 2)]
    assert split(5, 5, tiers) == []


def test_the_rollups_are_tried_largest_first():
    assert ROLLUPS == (("week", WEEK), ("day", DAY), ("hour", HOUR))


def covers(parts: list[RangePart], since: int, until: int) -> bool:
    """The parts follow each other without a gap or an overlap, from since to until."""
    edges = [since]
    for part in parts:
        if part.since_ns != edges[-1]:
            return False
        edges.append(part.until_ns)
    return edges[-1] == until


def test_a_range_inside_one_hour_is_read_raw():
    since, until = 50 * DAY + 3 * HOUR + 5 * MINUTE, 50 * DAY + 3 * HOUR + 50 * MINUTE
    assert plan(since, until, days_closed_until=TODAY, now_ns=NOW) == [RangePart("raw", since, until)]


def test_a_whole_hour_is_read_from_the_hourly_rollup():
    since = 50 * DAY + 3 * HOUR
    assert plan(since, since + HOUR, days_closed_until=TODAY, now_ns=NOW) == [
        RangePart("hour", since, since + HOUR)
    ]


def test_a_range_across_midnight_reads_hours_on_either_side_and_raw_edges():
    since, until = 50 * DAY - 2 * HOUR - 10 * MINUTE, 50 * DAY + HOUR + 30 * MINUTE
    parts = plan(since, until, days_closed_until=TODAY, now_ns=NOW)
    assert parts == [
        RangePart("raw", since, 50 * DAY - 2 * HOUR),
        RangePart("hour", 50 * DAY - 2 * HOUR, 50 * DAY + HOUR),
        RangePart("raw", 50 * DAY + HOUR, until),
    ]
    assert covers(parts, since, until)


def test_whole_days_are_read_from_the_daily_rollup():
    assert plan(40 * DAY, 47 * DAY, days_closed_until=TODAY, now_ns=NOW) == [
        RangePart("day", 40 * DAY, 47 * DAY)
    ]


def test_days_without_their_daily_sums_yet_are_read_by_the_hour():
    # Days from 45 on have not been closed: they are read hour by hour, even where they are whole.
    parts = plan(40 * DAY, 47 * DAY, days_closed_until=45 * DAY, now_ns=NOW)
    assert parts == [RangePart("day", 40 * DAY, 45 * DAY), RangePart("hour", 45 * DAY, 47 * DAY)]
    assert plan(46 * DAY, 47 * DAY, days_closed_until=45 * DAY, now_ns=NOW) == [
        RangePart("hour", 46 * DAY, 47 * DAY)
    ]


def test_a_range_up_to_now_is_cut_at_the_start_of_this_hour():
    """The hours before this one no longer receive data: their part's answer can be kept."""
    since = TODAY - 7 * DAY
    parts = plan(since, None, days_closed_until=TODAY, now_ns=NOW)
    assert parts == [
        RangePart("day", since, TODAY),
        RangePart("hour", TODAY, TODAY + 13 * HOUR),
        RangePart("hour", TODAY + 13 * HOUR, None),
    ]


def test_a_range_that_starts_in_this_hour_is_not_cut():
    since = TODAY + 13 * HOUR + 5 * MINUTE
    assert plan(since, None, days_closed_until=TODAY, now_ns=NOW) == [
        RangePart("raw", since, TODAY + 14 * HOUR),
        RangePart("hour", TODAY + 14 * HOUR, None),
    ]


def test_all_time_reads_every_closed_week_then_days_then_hours():
    assert plan(None, None, days_closed_until=TODAY, now_ns=NOW) == [
        RangePart("week", None, 14 * WEEK),  # day 98: the start of the week that has not ended
        RangePart("day", 14 * WEEK, TODAY),
        RangePart("hour", TODAY, TODAY + 13 * HOUR),
        RangePart("hour", TODAY + 13 * HOUR, None),
    ]


def test_a_month_reads_the_weeks_that_have_ended_and_days_around_them():
    since = TODAY + 13 * HOUR + 20 * MINUTE - 30 * DAY  # day 70, 13:20: thirty days back from now
    assert plan(since, None, days_closed_until=TODAY, now_ns=NOW) == [
        RangePart("raw", since, 70 * DAY + 14 * HOUR),
        RangePart("hour", 70 * DAY + 14 * HOUR, 71 * DAY),
        RangePart("day", 71 * DAY, 11 * WEEK),
        RangePart("week", 11 * WEEK, 14 * WEEK),
        RangePart("day", 14 * WEEK, TODAY),
        RangePart("hour", TODAY, TODAY + 13 * HOUR),
        RangePart("hour", TODAY + 13 * HOUR, None),
    ]
    # A week whose days have not all got their daily sums is read by the day, its last days by the hour.
    assert plan(13 * WEEK, 14 * WEEK, days_closed_until=14 * WEEK - DAY, now_ns=NOW) == [
        RangePart("day", 13 * WEEK, 14 * WEEK - DAY),
        RangePart("hour", 14 * WEEK - DAY, 14 * WEEK),
    ]


def test_a_chart_reads_only_rollups_whose_periods_fit_its_buckets():
    since, until = 40 * DAY + 30 * MINUTE, 43 * DAY
    by_hour = plan(since, until, days_closed_until=TODAY, now_ns=NOW, bucket_ns=3 * HOUR)
    assert by_hour == [
        RangePart("raw", since, 40 * DAY + HOUR),
        RangePart("hour", 40 * DAY + HOUR, 43 * DAY),
    ]
    by_day = plan(since, until, days_closed_until=TODAY, now_ns=NOW, bucket_ns=DAY)
    assert [part.source for part in by_day] == ["raw", "hour", "day"]
    assert plan(since, until, days_closed_until=TODAY, now_ns=NOW, bucket_ns=15 * MINUTE) == [
        RangePart("raw", since, until)
    ]


def test_a_filter_the_rollups_cannot_answer_reads_the_whole_range_raw():
    assert plan(40 * DAY, 47 * DAY, days_closed_until=TODAY, now_ns=NOW, raw_only=True) == [
        RangePart("raw", 40 * DAY, 47 * DAY)
    ]


def test_an_empty_or_reversed_range_has_no_parts():
    assert plan(5 * DAY, 5 * DAY, days_closed_until=TODAY, now_ns=NOW) == []
    assert plan(6 * DAY, 5 * DAY, days_closed_until=TODAY, now_ns=NOW) == []


def test_every_plan_covers_its_range_exactly():
    edges = [40 * DAY + k * 17 * MINUTE for k in range(0, 200, 7)]
    for since in edges:
        for until in edges:
            if since < until:
                for bucket in (None, MINUTE, HOUR, DAY):
                    parts = plan(since, until, days_closed_until=41 * DAY, now_ns=NOW, bucket_ns=bucket)
                    assert covers(parts, since, until), (since, until, bucket, parts)
                    for part in parts:
                        if part.source != "raw":
                            size = dict(ROLLUPS)[part.source]
                            assert part.since_ns % size == 0 and part.until_ns % size == 0
                            assert part.source != "day" or part.until_ns <= 41 * DAY
